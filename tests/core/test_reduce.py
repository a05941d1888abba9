"""Reductions: forward vs numpy float64, backward vs finite differences, dims/keepdim, dtypes vs
PyTorch, ties, zeros, empty tensors, errors."""
import numpy as np
import pytest

import vibetensor as vt
from tests.opcheck import assert_close, check_op, noncontig, ALL, dtypes_on

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch not installed")
R = np.random.randn




def _np_axis(dim):
    return tuple(dim) if isinstance(dim, (list, tuple)) else dim


def _lse(a, axis=None, keepdims=False):
    m = np.max(a, axis=axis, keepdims=True)
    r = np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True)) + m
    return r if keepdims else np.squeeze(r, axis=axis) if axis is not None else r.reshape(())


def _norm(a, p, axis=None, keepdims=False):
    ab = np.abs(a)
    if p == np.inf:
        return np.max(ab, axis=axis, keepdims=keepdims)
    if p == -np.inf:
        return np.min(ab, axis=axis, keepdims=keepdims)
    return np.sum(ab ** p, axis=axis, keepdims=keepdims) ** (1 / p)


# name -> (vt fn(x, dim, keepdim), numpy reference(a, axis, keepdims))
REDUCTIONS = {
    "sum": (lambda x, d, k: vt.sum(x, d, keepdim=k), lambda a, d, k: np.sum(a, axis=d, keepdims=k)),
    "mean": (lambda x, d, k: x.mean(d, keepdim=k), lambda a, d, k: np.mean(a, axis=d, keepdims=k)),
    "prod": (lambda x, d, k: vt.prod(x, d, keepdim=k), lambda a, d, k: np.prod(a, axis=d, keepdims=k)),
    "amax": (lambda x, d, k: vt.amax(x, () if d is None else d, keepdim=k),
             lambda a, d, k: np.max(a, axis=d, keepdims=k)),
    "amin": (lambda x, d, k: x.amin(() if d is None else d, keepdim=k),
             lambda a, d, k: np.min(a, axis=d, keepdims=k)),
    "var": (lambda x, d, k: vt.var(x, d, keepdim=k), lambda a, d, k: np.var(a, axis=d, keepdims=k, ddof=1)),
    "var_c0": (lambda x, d, k: vt.var(x, d, keepdim=k, correction=0),
               lambda a, d, k: np.var(a, axis=d, keepdims=k)),
    "std": (lambda x, d, k: x.std(d, keepdim=k), lambda a, d, k: np.std(a, axis=d, keepdims=k, ddof=1)),
    "std_biased": (lambda x, d, k: vt.std(x, d, unbiased=False, keepdim=k),
                   lambda a, d, k: np.std(a, axis=d, keepdims=k)),
    "norm2": (lambda x, d, k: vt.norm(x, dim=d, keepdim=k), lambda a, d, k: _norm(a, 2, d, k)),
    "norm1": (lambda x, d, k: x.norm(1, d, k), lambda a, d, k: _norm(a, 1, d, k)),
    "norm3": (lambda x, d, k: x.norm(3, d, k), lambda a, d, k: _norm(a, 3, d, k)),
    "norm_half": (lambda x, d, k: x.norm(0.5, d, k), lambda a, d, k: _norm(a, 0.5, d, k)),
    "norm_inf": (lambda x, d, k: x.norm(float("inf"), d, k), lambda a, d, k: _norm(a, np.inf, d, k)),
    "norm_ninf": (lambda x, d, k: x.norm(-float("inf"), d, k), lambda a, d, k: _norm(a, -np.inf, d, k)),
    "logsumexp": (lambda x, d, k: vt.logsumexp(x, d, keepdim=k), _lse),
}

DIMS = [None, 0, -1, (0, 2), (-1, 1)]


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
@pytest.mark.parametrize("keepdim", [False, True])
def test_reduction_forward_backward(name, keepdim, device):
    fn, ref = REDUCTIONS[name]
    a = R(2, 3, 4)
    if name.startswith("prod"):
        a = np.random.uniform(0.5, 1.5, a.shape) * np.random.choice([-1, 1], a.shape)
    for dim in DIMS:
        check_op(lambda x: fn(x, dim, keepdim), lambda v: ref(v, _np_axis(dim), keepdim), [a], device=device)


@pytest.mark.parametrize("name", ["sum", "mean", "prod", "amax", "var", "std", "norm2", "logsumexp"])
def test_reduction_noncontiguous(name, device):
    fn, ref = REDUCTIONS[name]
    a = R(4, 3)
    check_op(lambda x: fn(x, 0, False), lambda v: ref(v, 0, False), [a], device=device,
             make=lambda v: noncontig(v, device))


@needs_torch
@pytest.mark.parametrize("name", ["sum", "mean", "prod", "amax", "amin", "var", "std", "norm", "logsumexp",
                                  "cumsum", "cumprod", "argmax", "argmin", "all", "any", "count_nonzero"])
def test_reduction_dtypes_vs_torch(name, device):
    """Result dtype and values (or the refusal) of every dtype as PyTorch: bool/int sums -> int64,
    half accumulates in float32, mean/var of ints raise."""
    a = R(3, 5) * 2
    args = {"cumsum": (1,), "cumprod": (1,), "logsumexp": (1,), "argmax": (1,), "argmin": (1,)}.get(name, ())
    for dt in dtypes_on(device, ALL):
        src = a > 0 if dt is vt.bool else (np.abs(a) if dt is vt.uint8 else a)
        arr = np.asarray(src).astype(np.float32).astype(dt.np) if dt is not vt.bool else src
        x = vt.tensor(arr, device=device)
        tx = torch.from_numpy(np.asarray(arr, dtype=np.float32) if dt is vt.bfloat16 else arr).to(
            getattr(torch, dt.name))
        try:
            want = getattr(torch, name)(tx, *args)
        except (RuntimeError, NotImplementedError, TypeError):
            with pytest.raises((vt.DTypeError, TypeError, NotImplementedError, RuntimeError)):
                getattr(vt, name)(x, *args)
            continue
        got = getattr(vt, name)(x, *args)
        wn = str(want.dtype).replace("torch.", "")
        assert got.dtype.name == wn, f"{name}({dt.name}): {got.dtype.name}, torch gives {wn}"
        w = want.to(torch.float64).numpy() if want.dtype.is_floating_point else want.numpy()
        tol = {"float16": 4e-3, "bfloat16": 3e-2, "float32": 1e-5}.get(wn, 1e-9)
        assert_close(got, w, rtol=tol, atol=tol, msg=f"{name}({dt.name})")


def test_half_sums_accumulate_in_float32(device):
    for dt in dtypes_on(device, [vt.float16, vt.bfloat16]):
        x = vt.full((4096,), 1.0, dtype=dt, device=device) + vt.full((4096,), 0.0, dtype=dt, device=device)
        s = x.sum()
        assert s.dtype is dt and s.item() == 4096.0  # a float16 accumulator stalls at 2048
        assert x.mean().item() == 1.0
        c = vt.cumsum(vt.full((3000,), 1.0, dtype=dt, device=device), 0)
        assert c.dtype is dt and float(c[-1].item()) == float(np.asarray(3000, dtype=np.float32).astype(dt.np)
                                                                .astype(np.float32))


def test_sum_and_prod_integer_and_dtype_kw(device):
    b = vt.tensor([True, True, False], device=device)
    assert b.sum().dtype is vt.int64 and b.sum().item() == 2
    i8 = vt.tensor([100, 100, 100], dtype=vt.int8, device=device)
    assert i8.sum().item() == 300 and i8.prod().dtype is vt.int64 and i8.prod().item() == 10 ** 6
    assert vt.sum(i8, dtype=vt.float32).dtype is vt.float32
    assert vt.mean(i8, dtype=vt.float64).item() == 100.0
    with pytest.raises(vt.DTypeError, match="floating"):
        i8.mean()
    with pytest.raises(vt.DTypeError, match="floating"):
        i8.var()


def test_zero_d_and_empty(device):
    s = vt.tensor(3.0, requires_grad=True, device=device)
    for out in (s.sum(), s.sum(0), s.mean(-1), s.amax(0), s.prod(0), vt.logsumexp(s, 0), vt.cumsum(s, 0)):
        assert out.shape == () and out.item() == pytest.approx(3.0)
    assert s.argmax().item() == 0 and s.argmax(0).item() == 0
    v, i = vt.max(s, 0)
    assert v.item() == 3.0 and i.item() == 0
    (s.sum(0) * 2).backward()
    assert s.grad.item() == 2.0
    e = vt.zeros((0, 3), device=device)
    assert e.sum().item() == 0 and e.prod().item() == 1 and np.isnan(e.mean().item())
    np.testing.assert_array_equal(e.sum(0).cpu().numpy(), np.zeros(3))
    assert tuple(e.sum(1).shape) == (0,) and tuple(e.amax(1).shape) == (0,)
    assert vt.logsumexp(e, 0).cpu().numpy().tolist() == [-np.inf] * 3
    assert e.count_nonzero().item() == 0 and e.all().item() is True and e.any().item() is False
    assert tuple(vt.cumsum(e, 0).shape) == (0, 3)
    with pytest.raises(IndexError, match="non-zero size"):
        e.amax()
    with pytest.raises(IndexError, match="non-zero size"):
        e.amax(0)
    with pytest.raises(IndexError, match="non-zero size"):
        vt.max(e)
    with pytest.raises(IndexError, match="non-zero size"):
        e.argmax(0)


def test_max_min_dispatch_and_gradients(device):
    a = np.array([[1.0, 5.0, 5.0], [2.0, -1.0, 0.5]])
    x = vt.tensor(a, requires_grad=True, device=device)
    v, i = vt.max(x, 1)
    np.testing.assert_array_equal(v.detach().cpu().numpy(), [5.0, 2.0])
    np.testing.assert_array_equal(i.cpu().numpy(), [1, 0])
    assert i.dtype is vt.int64
    r = x.max(dim=1, keepdim=True)
    assert tuple(r.values.shape) == (2, 1) and tuple(r.indices.shape) == (2, 1)
    (v * vt.tensor([1.0, 10.0], device=device)).sum().backward()
    np.testing.assert_array_equal(x.grad.cpu().numpy(), [[0, 1, 0], [10, 0, 0]])  # to the index only
    x.grad = None
    x.max().backward()  # the full max shares the gradient evenly among ties, as amax
    np.testing.assert_array_equal(x.grad.cpu().numpy(), [[0, 0.5, 0.5], [0, 0, 0]])
    x.grad = None
    vt.amin(x, 0).sum().backward()
    np.testing.assert_array_equal(x.grad.cpu().numpy(), [[1, 0, 0], [0, 1, 1]])
    _, mi = vt.min(x, 0)
    np.testing.assert_array_equal(mi.cpu().numpy(), [0, 1, 1])
    y = vt.tensor([[3.0, 1.0]], device=device)
    np.testing.assert_array_equal(vt.max(x.detach(), vt.tensor([2.0, 2.0, 2.0], device=device)).cpu().numpy(),
                                  np.maximum(a, 2.0))
    np.testing.assert_array_equal(vt.min(y, other=vt.tensor(2.0, device=device)).cpu().numpy(), [[2.0, 1.0]])
    check_op(lambda t: vt.max(t, -1).values, lambda t: np.max(t, -1), [R(3, 4)], device=device)
    check_op(lambda t: vt.min(t, 0, True)[0], lambda t: np.min(t, 0, keepdims=True), [R(3, 4)], device=device)


@needs_torch
def test_amax_ties_match_torch(device):
    a = np.array([[1.0, 3.0, 3.0, 3.0], [2.0, 2.0, 0.0, 1.0]])
    for fn in ("amax", "amin"):
        x = vt.tensor(a, requires_grad=True, device=device)
        tx = torch.tensor(a, requires_grad=True)
        getattr(vt, fn)(x, 1).sum().backward()
        getattr(torch, fn)(tx, 1).sum().backward()
        np.testing.assert_allclose(x.grad.cpu().numpy(), tx.grad.numpy())
    x = vt.tensor(a, requires_grad=True, device=device)
    tx = torch.tensor(a, requires_grad=True)
    x.norm(float("inf")).backward()
    tx.norm(float("inf")).backward()
    np.testing.assert_allclose(x.grad.cpu().numpy(), tx.grad.numpy())


def test_argmax_argmin(device):
    a = R(3, 4, 5)
    x = vt.tensor(a, device=device)
    assert x.argmax().item() == np.argmax(a) and x.argmin().item() == np.argmin(a)
    for d in (0, 1, -1):
        np.testing.assert_array_equal(x.argmax(d).cpu().numpy(), np.argmax(a, d))
        np.testing.assert_array_equal(vt.argmin(x, d, keepdim=True).cpu().numpy(), np.argmin(a, d, keepdims=True))
    assert tuple(x.argmax(keepdim=True).shape) == (1, 1, 1)
    assert x.argmax().dtype is vt.int64


def test_prod_with_zeros_gradients(device):
    for a in ([[2.0, 0.0, 3.0], [1.5, -2.0, 4.0]], [[0.0, 0.0, 3.0], [0.0, 2.0, 1.0]]):
        a = np.array(a)
        check_op(lambda t: t.prod(1), lambda t: np.prod(t, 1), [a], device=device)
        check_op(lambda t: t.prod(), lambda t: np.prod(t), [a], device=device)
        check_op(lambda t: t.prod((0, 1), keepdim=True), lambda t: np.prod(t, keepdims=True), [a], device=device)


def test_cumsum_cumprod(device):
    a = R(3, 4)
    for d in (0, 1, -1):
        check_op(lambda t: vt.cumsum(t, d), lambda t: np.cumsum(t, d), [a], device=device)
        check_op(lambda t: t.cumprod(d), lambda t: np.cumprod(t, d), [a], device=device)
    z = np.array([[1.5, 0.0, 2.0, -1.0, 0.0], [0.5, 2.0, -3.0, 1.0, 2.0], [0.0, 1.0, 2.0, 3.0, 4.0]])
    check_op(lambda t: t.cumprod(1), lambda t: np.cumprod(t, 1), [z], device=device)  # zeros: exact gradient
    check_op(lambda t: t.cumsum(0), lambda t: np.cumsum(t, 0), [a], device=device, make=lambda v: noncontig(v, device))
    i = vt.tensor([1, 2, 3], dtype=vt.int8, device=device)
    assert vt.cumsum(i, 0).dtype is vt.int64 and vt.cumsum(i, 0, dtype=vt.float32).dtype is vt.float32


def test_var_std_signatures(device):
    a = R(4, 5)
    x = vt.tensor(a, dtype=vt.float64, device=device)
    assert_close(x.var(), np.var(a, ddof=1))
    assert_close(x.var(False), np.var(a))  # legacy var(x, unbiased)
    assert_close(vt.var(x, 1, True, True), np.var(a, 1, ddof=1, keepdims=True))
    assert_close(vt.std(x, dim=0, correction=2), np.std(a, 0, ddof=2))
    assert_close(vt.var(x, dim=(0, 1), unbiased=True), np.var(a, ddof=1))
    with pytest.raises(TypeError, match="unbiased"):
        vt.var(x, unbiased=True, correction=1)
    one = vt.tensor([2.0], dtype=vt.float64, device=device)
    assert np.isnan(one.var().item())  # n - correction = 0: nan as PyTorch, no warning
    c = vt.tensor([2.0, 2.0, 2.0], requires_grad=True, device=device)
    c.std().backward()
    np.testing.assert_array_equal(c.grad.cpu().numpy(), [0, 0, 0])  # constant input: zero, not nan


def test_norm_variants(device):
    a = R(3, 4)
    x = vt.tensor(a, dtype=vt.float64, device=device)
    assert_close(x.norm(), np.linalg.norm(a))
    assert_close(vt.norm(x, "fro", dim=(0, 1)), np.linalg.norm(a))
    assert_close(x.norm(0), np.count_nonzero(a) * 1.0)
    assert_close(x.norm(p=2, dim=1, keepdim=True), np.linalg.norm(a, axis=1, keepdims=True))
    with pytest.raises(NotImplementedError, match="nuc"):
        x.norm("nuc")
    with pytest.raises(vt.DTypeError, match="floating"):
        vt.tensor([1, 2], device=device).norm()
    z = vt.zeros(3, requires_grad=True, device=device)
    z.norm().backward()
    np.testing.assert_array_equal(z.grad.cpu().numpy(), [0, 0, 0])  # subgradient 0 at the origin


def test_all_any_count_nonzero(device):
    a = np.array([[0, 1, 2], [0, 0, 3]])
    x = vt.tensor(a, device=device)
    assert x.all().item() is False and x.any().item() is True
    np.testing.assert_array_equal(x.all(1).cpu().numpy(), [False, False])
    np.testing.assert_array_equal(x.any(0, keepdim=True).cpu().numpy(), [[False, True, True]])
    np.testing.assert_array_equal(vt.count_nonzero(x, 1).cpu().numpy(), [2, 1])
    assert vt.count_nonzero(x, (0, 1)).item() == 3 and x.count_nonzero().dtype is vt.int64
    f = vt.tensor([0.0, np.nan], device=device)
    assert f.any().item() is True and f.all().item() is False


def test_logsumexp_extremes(device):
    x = vt.tensor([[1000.0, 1000.0], [-np.inf, -np.inf]], dtype=vt.float64, device=device)
    out = vt.logsumexp(x, 1).cpu().numpy()
    assert out[0] == pytest.approx(1000 + np.log(2)) and out[1] == -np.inf
    assert vt.logsumexp(vt.tensor([1, 2], device=device), 0).dtype is vt.float32


def test_dim_errors(device):
    x = vt.zeros((2, 3), device=device)
    for fn in (lambda: x.sum(2), lambda: x.mean(-3), lambda: x.amax(5), lambda: x.argmax(2), lambda: vt.max(x, 2),
               lambda: x.cumsum(2), lambda: x.var(3), lambda: x.norm(dim=4), lambda: x.logsumexp(2)):
        with pytest.raises(IndexError, match=r"out of range.*expected -2\.\.1"):
            fn()
    with pytest.raises(ValueError, match="more than once"):
        x.sum((0, 0))
    with pytest.raises(TypeError, match="single int"):
        x.cumsum((0, 1))


def test_every_reduction_is_reachable_three_ways():
    for name in ("sum mean prod max min amax amin argmax argmin var std norm logsumexp cumsum cumprod all any "
                 "count_nonzero").split():
        op = getattr(vt.ops.vt, name)
        assert getattr(vt, name) is op, name
        assert callable(getattr(vt.Tensor, name)), name


def test_reduction_gradient_keeps_input_dtype(device):
    x = vt.tensor(R(3, 2), dtype=vt.float32, requires_grad=True, device=device)
    vt.sum(x, dtype=vt.float64).backward()
    assert x.grad.dtype is vt.float32
    np.testing.assert_array_equal(x.grad.cpu().numpy(), np.ones((3, 2)))
    for dt in dtypes_on(device, [vt.float16, vt.bfloat16]):
        h = vt.tensor(R(4, 3), dtype=dt, requires_grad=True, device=device)
        (h.mean(0) * 2).sum().backward()
        assert h.grad.dtype is dt
        assert_close(h.grad, np.full((4, 3), 0.5), dtype=dt)
