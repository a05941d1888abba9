"""Indexing in PyTorch's dimension order: an int beside a list/tensor index is a select, not an advanced
index (``x[0, :, [1, 2]]`` is (4, 2), numpy says (2, 4)). getitem, setitem, index_put and their gradients
against PyTorch over random index mixes."""
import numpy as np
import pytest

import vibetensor as vt
from tests.opcheck import assert_close

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None


# ------------------------------------------------- PyTorch's dimension order: ints are a select, not advanced
def _rand_torch_index(rng, shape, device):
    """A random index for ``shape`` mixing ints (negative, 0-d tensors), slices with steps, None, Ellipsis,
    int lists / tensors, bool masks (lists / tensors) and bool scalars: (vt index, torch index). Some do not
    broadcast or are refused by PyTorch; the caller skips those."""
    def vten(x):
        return vt.tensor(x, device=device)

    nd = len(shape)
    ell = rng.integers(0, nd + 1) if rng.random() < 0.3 else -1
    plan, d = [], 0  # (kind, dims of shape it takes)
    while d <= nd:
        if rng.random() < 0.15:
            plan.append(("none", ()))
        if d == ell:
            k = int(rng.integers(0, nd - d + 1))
            plan.append(("ell", ()))
            d, ell = d + k, -2  # -2: the Ellipsis is placed
            continue
        if d == nd or (ell == -1 and rng.random() < 0.1):
            break
        r = rng.random()
        if r < 0.05:
            plan.append(("bool", ()))
            continue
        if r < 0.35:
            plan.append(("int", (shape[d],)))
        elif r < 0.6:
            plan.append(("slice", (shape[d],)))
        elif r < 0.85 or d == nd - 1 or d + 1 == ell:
            plan.append(("adv", (shape[d],)))
        else:
            k = 1 + int(rng.random() < 0.5 and d + 2 <= nd and (ell < 0 or d + 2 <= ell))
            plan.append(("mask", tuple(shape[d:d + k])))
            d += k
            continue
        d += 1
    masks = [dims for kind, dims in plan if kind == "mask"]
    if masks:
        n = int(rng.integers(1, min(int(np.prod(m)) for m in masks) + 1))
        bshape = (n,)
    else:
        bshape = [(1,), (2,), (3,), (2, 3)][rng.integers(0, 4)]
    n_adv = sum(1 for kind, _ in plan if kind in ("adv", "mask", "bool"))
    vi, ti = [], []
    for kind, dims in plan:
        form = rng.random() < 0.5
        if kind == "none":
            vi.append(None), ti.append(None)
        elif kind == "ell":
            vi.append(Ellipsis), ti.append(Ellipsis)
        elif kind == "bool":
            b = bool(rng.random() < 0.8 or n_adv > 1 or bshape != (1,))
            vi.append(vten(b) if form else b), ti.append(torch.tensor(b) if form else b)
        elif kind == "int":
            i = int(rng.integers(-dims[0], dims[0]))
            vi.append(vten(i) if form else i), ti.append(torch.tensor(i) if form else i)
        elif kind == "slice":
            n = dims[0]
            s = slice(*[None if rng.random() < 0.4 else int(rng.integers(-n - 1, n + 2)) for _ in range(2)],
                      None if rng.random() < 0.5 else int(rng.integers(1, 4)))
            vi.append(s), ti.append(s)
        elif kind == "adv":
            shp = bshape[-int(rng.integers(1, len(bshape) + 1)):] if rng.random() < 0.7 else (1,)
            a = rng.integers(-dims[0], dims[0], size=shp)
            vi.append(vten(a) if form else a.tolist()), ti.append(torch.tensor(a) if form else a.tolist())
        else:
            flat = np.zeros(int(np.prod(dims)), bool)
            flat[rng.choice(flat.size, bshape[0], replace=False)] = True
            m = flat.reshape(dims)
            form = form or m.ndim > 1  # PyTorch counts a nested list as one dim when it expands an Ellipsis
            vi.append(vten(m) if form else m.tolist()), ti.append(torch.tensor(m) if form else m.tolist())
    return tuple(vi), tuple(ti)


def _torch_index_cases(n, seed, device="cpu"):
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < n:
        shape = tuple(int(s) for s in rng.integers(1, 5, size=int(rng.choice([1, 2, 3, 3, 4, 4, 4]))))
        vi, ti = _rand_torch_index(rng, shape, device)
        try:
            ref = torch.zeros(shape)[ti]
        except (IndexError, RuntimeError):
            continue  # advanced indices that do not broadcast, too many indices: not this test's business
        nidx = tuple(i.numpy() if isinstance(i, torch.Tensor) else i for i in ti)
        if np.zeros(shape)[nidx].shape == tuple(ref.shape) and rng.random() < 0.8:
            continue  # more of the cases where numpy's order is not PyTorch's (about a fifth)
        cases.append((shape, vi, ti, tuple(ref.shape)))
    return cases


def _unique_positions(shape, ti):
    pos = torch.arange(int(np.prod(shape))).reshape(shape)[ti]
    return pos.unique().numel() == pos.numel()


@pytest.mark.skipif(torch is None, reason="PyTorch not installed")
def test_int_with_advanced_index_orders_dims_as_torch(device):
    x = vt.arange(60.0, device=device).reshape(3, 4, 5)
    m = vt.tensor([True, False, True, False, True], device=device)
    assert x[0, :, [1, 2]].shape == (4, 2)
    assert x[0, :, m].shape == (4, 3)
    assert x[vt.tensor(0), :, [1, 2]].shape == (4, 2)  # a 0-d integer tensor is an int, as in PyTorch
    assert x[:, [1], 0].shape == (3, 1) and x[:, 0, [1]].shape == (3, 1) and x[0, [1], None].shape == (1, 1, 5)
    assert x[0, :, True, [1]].shape == (4, 1) and x[:, [1], ..., [2]].shape == (3, 1)  # an empty ... is no gap
    assert x[[0], :, 0].shape == (1, 4) and x[[0], ..., [0]].shape == (1, 4)  # apart: advanced dims first
    assert_close(x[-1, :, [1, 2]], np.arange(60.0).reshape(3, 4, 5)[-1][:, [1, 2]])
    x[0, :, [1, 2]] = vt.arange(8.0, device=device).reshape(4, 2)
    assert_close(x[0, :, [1, 2]], np.arange(8.0).reshape(4, 2))
    y = vt.zeros(3, 4, 5, device=device)
    y[0, :, m] = vt.arange(12.0, device=device).reshape(4, 3)
    t = torch.zeros(3, 4, 5)
    t[0, :, torch.tensor([True, False, True, False, True])] = torch.arange(12.0).reshape(4, 3)
    assert_close(y, t.numpy())


@pytest.mark.skipif(torch is None, reason="PyTorch not installed")
@pytest.mark.parametrize("seed", range(4))
def test_random_index_getitem_matches_torch(seed, device):
    for shape, vi, ti, rshape in _torch_index_cases(150, seed, device):
        a = np.random.default_rng(seed).standard_normal(shape)
        x = vt.tensor(a, dtype=vt.float64, device=device, requires_grad=True)
        tx = torch.tensor(a, requires_grad=True)
        out, ref = x[vi], tx[ti]
        assert out.shape == rshape, (shape, ti)
        assert_close(out, ref.detach().numpy())
        w = np.random.default_rng(seed + 1).standard_normal(rshape)
        (out * vt.tensor(w, dtype=vt.float64, device=device)).sum().backward()
        (ref * torch.tensor(w)).sum().backward()
        assert_close(x.grad, tx.grad.numpy())


@pytest.mark.skipif(torch is None, reason="PyTorch not installed")
@pytest.mark.parametrize("seed", range(4))
def test_random_index_setitem_matches_torch(seed, device):
    rng = np.random.default_rng(100 + seed)
    for shape, vi, ti, rshape in _torch_index_cases(150, 100 + seed, device):
        a = rng.standard_normal(shape)
        # a value of the indexed shape shows the dims' order; where positions repeat, which write wins is
        # unspecified in PyTorch, so a scalar there
        v = rng.standard_normal(rshape) if _unique_positions(shape, ti) else np.array(rng.standard_normal())
        if v.size and v.ndim and rng.random() < 0.3:
            v = v[(0,) * int(rng.integers(0, v.ndim + 1))]  # fewer dims: broadcast from the right
        t = torch.tensor(a)
        t[ti] = torch.tensor(v)
        x = vt.tensor(a, dtype=vt.float64, device=device)
        x[vi] = vt.tensor(v, dtype=vt.float64, device=device)  # no autograd: numpy's setitem
        assert_close(x, t.numpy())
        assert_close(vt.index_put(vt.tensor(a, dtype=vt.float64, device=device), vi,
                                  vt.tensor(v, dtype=vt.float64, device=device)), t.numpy())
        # autograd records: index_put on a clone, gradients to the old contents and to the value
        xa = vt.tensor(a, dtype=vt.float64, device=device, requires_grad=True)
        va = vt.tensor(v, dtype=vt.float64, device=device, requires_grad=True)
        ta, tv = torch.tensor(a, requires_grad=True), torch.tensor(v, requires_grad=True)
        z, tz = xa * 1.0, ta * 1.0
        z[vi] = va
        tz[ti] = tv
        assert_close(z, tz.detach().numpy())
        w = rng.standard_normal(shape)
        (z * vt.tensor(w, dtype=vt.float64, device=device)).sum().backward()
        (tz * torch.tensor(w)).sum().backward()
        assert_close(xa.grad, ta.grad.numpy())
        assert_close(va.grad, tv.grad.numpy())


@pytest.mark.skipif(torch is None, reason="PyTorch not installed")
@pytest.mark.parametrize("seed", range(2))
def test_random_index_put_accumulate_matches_torch(seed, device):
    rng = np.random.default_rng(200 + seed)
    for shape, vi, ti, rshape in _torch_index_cases(100, 200 + seed, device):
        a, v = rng.standard_normal(shape), rng.standard_normal(rshape)
        ref = torch.tensor(a).reshape(-1)  # PyTorch's accumulate takes tensors only: add at flat positions
        pos = torch.arange(int(np.prod(shape))).reshape(shape)[ti]
        ref.index_add_(0, pos.reshape(-1), torch.tensor(v).reshape(-1))
        out = vt.index_put(vt.tensor(a, dtype=vt.float64, device=device), vi,
                           vt.tensor(v, dtype=vt.float64, device=device), accumulate=True)
        assert_close(out, ref.reshape(shape).numpy())
