"""The ops of core/ops/extra_*.py: values and gradients against PyTorch (float64, random inputs, odd shapes,
broadcasting, non-contiguous views), finite differences for einsum, every supported dtype, and errors."""
import math

import numpy as np
import pytest

import vibetensor as vt
from tests.opcheck import check_op, to_np64

torch = pytest.importorskip("torch")

R = np.random.randn
FLOATS = [vt.float16, vt.bfloat16, vt.float32, vt.float64]
INTS = [vt.int8, vt.int16, vt.int32, vt.int64, vt.uint8]
TOL = {"float16": (2e-3, 2e-3), "bfloat16": (1.6e-2, 1.6e-2), "float32": (1e-5, 1e-5), "float64": (1e-10, 1e-12)}
TDT = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64,
       "int8": torch.int8, "int16": torch.int16, "int32": torch.int32, "int64": torch.int64, "uint8": torch.uint8,
       "bool": torch.bool}


def V(a, device="cpu", dtype=vt.float64, rg=False):
    if device == "cuda" and dtype is vt.bfloat16:
        from vibetensor.core import backend
        try:
            backend.check_cuda_dtype(dtype)
        except TypeError as e:
            pytest.skip(f"bfloat16 on CUDA: {e}")
    return vt.tensor(np.asarray(a), dtype=dtype, device=device, requires_grad=rg)


def T(a, dtype=torch.float64, rg=False):
    t = torch.from_numpy(np.array(a)).to(dtype)
    return t.requires_grad_(rg) if rg else t


def tnp(t):
    """A torch result as numpy (float64 for floats)."""
    t = t.detach()
    return t.double().numpy() if t.is_floating_point() else t.numpy()


def close(v, t, dtype=None, rtol=None, atol=None, msg=""):
    """vt tensor ``v`` equals torch tensor (or array) ``t``: shape, dtype (when a torch tensor), values."""
    if isinstance(t, torch.Tensor):
        assert str(t.dtype).replace("torch.", "") == v.dtype.name, f"{msg} dtype {v.dtype.name} vs {t.dtype}"
        t = tnp(t)
    a = to_np64(v)
    assert a.shape == np.shape(t), f"{msg} shape {a.shape} vs {np.shape(t)}"
    r, at = TOL.get((dtype or v.dtype).name, (0, 0))
    np.testing.assert_allclose(a, t, rtol=rtol if rtol is not None else r, atol=atol if atol is not None else at,
                               err_msg=msg, equal_nan=True)


def noncontig_v(a, device="cpu", dtype=vt.float64, rg=False):
    """A non-contiguous view holding ``a`` (transpose of a contiguous transpose); a leaf when rg."""
    base = V(np.ascontiguousarray(np.swapaxes(a, 0, -1)), device, dtype, rg)
    v = base.transpose(0, -1)
    assert a.ndim < 2 or not v.is_contiguous()
    return base, v


def rand_of(shape, dt, scale=3):
    a = R(*shape) * scale
    if dt is vt.bool:
        return a > 0
    if dt is vt.uint8:
        return np.abs(a).astype(np.uint8)
    if not dt.is_floating_point:
        return np.round(a).astype(dt.np)
    return a


def grads_match(vt_fn, torch_fn, arrays, device="cpu", rtol=1e-9, atol=1e-11):
    """Forward and every input's gradient of ``vt_fn`` equal ``torch_fn``'s (float64, random upstream)."""
    vs = [V(a, device, rg=True) for a in arrays]
    ts = [T(a, rg=True) for a in arrays]
    vo, to = vt_fn(*vs), torch_fn(*ts)
    close(vo, to, msg="forward", rtol=rtol, atol=atol)
    up = R(*to.shape)
    vo.backward(V(up, device))
    to.backward(T(up))
    for i, (v, t) in enumerate(zip(vs, ts)):
        assert v.grad is not None, f"input {i} got no gradient"
        close(v.grad, t.grad, rtol=rtol, atol=atol, msg=f"grad {i}")


# ================================================================== einsum
EINSUM = [
    ("ij,jk->ik", [(3, 4), (4, 5)]),
    ("ij,jk", [(3, 4), (4, 5)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("ii->i", [(4, 4)]),
    ("ii", [(4, 4)]),
    ("iij->j", [(3, 3, 5)]),
    ("iji->ij", [(3, 2, 3)]),
    ("i,i->", [(5,), (5,)]),
    ("i,j->ij", [(3,), (4,)]),
    ("ij->", [(3, 4)]),
    ("ij->j", [(3, 4)]),
    ("ij->ji", [(3, 4)]),
    ("ijk->kji", [(2, 3, 4)]),
    ("ba", [(3, 4)]),
    ("bn,anm,bm->ba", [(2, 3), (5, 3, 4), (2, 4)]),
    ("i,i,i->i", [(4,), (4,), (4,)]),
    ("ij,j->i", [(3, 1), (4,)]),
    ("ij,ij->ij", [(3, 1), (1, 4)]),
    ("...ij,...jk->...ik", [(2, 1, 3, 4), (5, 4, 2)]),
    ("...ii->...i", [(2, 3, 3)]),
    ("i...->...", [(3, 2, 4)]),
    ("...i->i", [(2, 3, 4)]),
    ("...", [(2, 3)]),
    ("b...,b...->b", [(2, 3, 4), (2, 3, 4)]),
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]),
    ("aabb->ab", [(2, 2, 3, 3)]),
    ("Ab,bC->AC", [(2, 3), (3, 4)]),
    (" i j , j k -> i k ", [(3, 4), (4, 5)]),
    ("ij,kl->", [(2, 3), (4, 1)]),
]


@pytest.mark.parametrize("eq,shapes", EINSUM)
def test_einsum_values_and_grads_vs_torch(eq, shapes, device):
    arrays = [R(*s) for s in shapes]
    grads_match(lambda *xs: vt.einsum(eq, *xs), lambda *xs: torch.einsum(eq, *xs), arrays, device)


def test_einsum_finite_differences_and_list_form(device):
    a, b = R(3, 3, 2), R(2, 4)
    check_op(lambda x, y: vt.einsum("iij,jk->ik", [x, y]), lambda x, y: np.einsum("iij,jk->ik", x, y), [a, b],
             device=device)


def test_einsum_noncontiguous(device):
    a, b = R(4, 3), R(5, 4)
    _, va = noncontig_v(a, device)
    _, vb = noncontig_v(b, device)
    close(vt.einsum("ji,kj->ik", va, vb), np.einsum("ji,kj->ik", a, b), rtol=1e-12)
    base, v = noncontig_v(R(3, 3), device, rg=True)
    vt.einsum("ii->", v).backward()
    close(base.grad, np.eye(3))


@pytest.mark.parametrize("dt", FLOATS + [vt.int32, vt.int64])
def test_einsum_dtypes_vs_torch(dt, device):
    a, b = rand_of((3, 4), dt), rand_of((4, 5), dt)
    out = vt.einsum("ij,jk->ik", V(a, device, dt), V(b, device, dt))
    ref = torch.einsum("ij,jk->ik", T(a, TDT[dt.name]), T(b, TDT[dt.name]))
    close(out, ref, rtol=4 * TOL.get(dt.name, (0, 0))[0], atol=0.1 if dt is vt.bfloat16 else 2e-2)


@pytest.mark.parametrize("eq,shapes", [("i->", [(3,)]), ("i,i->", [(3,), (3,)]), ("ij->j", [(2, 3)]),
                                       ("i,j->", [(2,), (3,)]), ("ii->i", [(3, 3)]), ("ij,jk->ik", [(2, 3), (3, 2)])])
def test_einsum_integer_result_dtype_as_torch(eq, shapes, device):
    arrays = [np.random.randint(-5, 5, size=s) for s in shapes]
    close(vt.einsum(eq, *[V(a, device, vt.int32) for a in arrays]),
          torch.einsum(eq, *[T(a, torch.int32) for a in arrays]))


def test_einsum_promotes_mixed_dtypes(device):
    out = vt.einsum("i,i->", V([1.0, 2.0], device, vt.float32), V([3.0, 4.0], device, vt.float64))
    assert out.dtype is vt.float64 and out.item() == 11.0


@pytest.mark.parametrize("args,exc,match", [
    (("ij,jk->ik", (3, 4)), ValueError, "names 2 operand"),
    (("ijk->i", (3, 4)), vt.ShapeError, "has 2 dim"),
    (("ij,jk->ik", (3, 4), (5, 6)), vt.ShapeError, "subscript 'j' has size 5"),
    (("ij->k", (3, 4)), ValueError, "'k' .* does not appear"),
    (("ij->ii", (3, 4)), ValueError, "repeat"),
    (("i1->i", (3, 4)), ValueError, "invalid subscript '1'"),
    (("ii->i", (3, 4)), vt.ShapeError, "different sizes"),
    (("i....->i", (3, 4)), ValueError, "'...' may appear"),
])
def test_einsum_errors(args, exc, match):
    eq, *shapes = args
    with pytest.raises(exc, match=match):
        vt.einsum(eq, *[vt.randn(*s) for s in shapes])


def test_einsum_sublist_form_not_implemented():
    a = vt.randn(2, 3)
    with pytest.raises(NotImplementedError, match="sublist"):
        vt.einsum(a, [0, 1], [1])


# ================================================================== broadcast_to, meshgrid
def test_broadcast_to(device):
    grads_match(lambda x: vt.broadcast_to(x, (2, 3, 4)), lambda x: torch.broadcast_to(x, (2, 3, 4)), [R(3, 1)],
                device)
    grads_match(lambda x: x.broadcast_to((5, -1)), lambda x: x.broadcast_to((5, -1)), [R(3)], device)
    with pytest.raises(vt.ShapeError, match=r"broadcast_to: cannot broadcast shape \(3,\) to \(4,\)"):
        vt.broadcast_to(V(R(3), device), (4,))


@pytest.mark.parametrize("indexing", ["ij", "xy"])
def test_meshgrid(indexing, device):
    arrays = [R(3), R(4), R(2)]
    vs = [V(a, device, rg=True) for a in arrays]
    ts = [T(a, rg=True) for a in arrays]
    vo, to = vt.meshgrid(*vs, indexing=indexing), torch.meshgrid(*ts, indexing=indexing)
    assert len(vo) == 3
    for v, t in zip(vo, to):
        close(v, t)
    ups = [R(*t.shape) for t in to]
    sum((v * V(u, device)).sum() for v, u in zip(vo, ups)).backward()
    sum((t * T(u)).sum() for t, u in zip(to, ups)).backward()
    for v, t in zip(vs, ts):
        close(v.grad, t.grad, rtol=1e-12)
    v2, t2 = vt.meshgrid([V(R(2), device), V(3.0, device)], indexing=indexing), torch.meshgrid(
        [torch.zeros(2), torch.tensor(3.0)], indexing=indexing)
    assert [tuple(x.shape) for x in v2] == [tuple(x.shape) for x in t2]
    with pytest.raises(vt.ShapeError, match="0-d or 1-d"):
        vt.meshgrid(V(R(2, 2), device), indexing=indexing)
    with pytest.raises(ValueError, match="'ij' or 'xy'"):
        vt.meshgrid(V(R(2), device), indexing="ji")


# ================================================================== diag, diag_embed, trace
@pytest.mark.parametrize("k", [-2, -1, 0, 1, 3])
def test_diag(k, device):
    grads_match(lambda x: vt.diag(x, k), lambda x: torch.diag(x, k), [R(4)], device)
    grads_match(lambda x: x.diag(k), lambda x: x.diag(k), [R(3, 5)], device)
    base, v = noncontig_v(R(5, 3), device)
    close(vt.diag(v, k), torch.diag(T(to_np64(v)), k))


def test_diag_copies_and_dtypes(device):
    x = V(R(3, 3), device)
    d = vt.diag(x)
    d[0] = 100.0
    assert to_np64(x)[0, 0] != 100.0
    for dt in FLOATS + INTS + [vt.bool]:
        a = rand_of((4,), dt)
        close(vt.diag(V(a, device, dt), 1), torch.diag(T(a, TDT[dt.name]), 1))
    with pytest.raises(vt.ShapeError, match="1-d or 2-d"):
        vt.diag(V(R(2, 2, 2), device))


@pytest.mark.parametrize("offset,d1,d2", [(0, -2, -1), (1, 0, 2), (-2, 2, 0), (0, 1, 0)])
def test_diag_embed(offset, d1, d2, device):
    grads_match(lambda x: vt.diag_embed(x, offset, d1, d2), lambda x: torch.diag_embed(x, offset, d1, d2),
                [R(2, 3)], device)
    grads_match(lambda x: x.diag_embed(offset), lambda x: x.diag_embed(offset), [R(3)], device)
    with pytest.raises(vt.ShapeError, match="identical"):
        vt.diag_embed(V(R(2, 3), device), 0, 1, 1)


def test_trace(device):
    grads_match(lambda x: vt.trace(x), lambda x: torch.trace(x), [R(3, 5)], device)
    grads_match(lambda x: x.trace(), lambda x: x.trace(), [R(4, 2)], device)
    for dt in [vt.float32, vt.int32, vt.int64, vt.uint8]:
        a = rand_of((4, 4), dt)
        close(vt.trace(V(a, device, dt)), torch.trace(T(a, TDT[dt.name])))
    with pytest.raises(vt.ShapeError, match="expected a 2-d tensor"):
        vt.trace(V(R(3), device))


# ================================================================== repeat_interleave, take_along_dim
@pytest.mark.parametrize("reps,dim", [(2, None), (3, 0), (2, -1), (0, 1), ([1, 0, 3], 0), ([2, 1, 1, 0, 2], 1),
                                      ([2], 0)])
def test_repeat_interleave(reps, dim, device):
    a = R(3, 5)
    if isinstance(reps, list):
        vr, tr = V(reps, device, vt.int64), torch.tensor(reps)
    else:
        vr, tr = reps, reps
    grads_match(lambda x: vt.repeat_interleave(x, vr, dim), lambda x: torch.repeat_interleave(x, tr, dim), [a],
                device)
    close(V(a, device).repeat_interleave(vr, dim=dim), T(a).repeat_interleave(tr, dim=dim))


def test_repeat_interleave_forms_and_dtypes(device):
    r = [2, 0, 1, 3]
    close(vt.repeat_interleave(V(r, device, vt.int64)), torch.repeat_interleave(torch.tensor(r)))
    for dt in FLOATS + INTS + [vt.bool]:
        a = rand_of((2, 3), dt)
        close(vt.repeat_interleave(V(a, device, dt), 2, 1), torch.repeat_interleave(T(a, TDT[dt.name]), 2, 1))
    close(vt.repeat_interleave(V(5.0, device), 3), torch.repeat_interleave(torch.tensor(5.0, dtype=torch.float64), 3))
    out = vt.repeat_interleave(V(R(3), device), V([1, 2, 3], device, vt.int64), 0, output_size=6)
    assert out.shape == (6,)
    with pytest.raises(vt.ShapeError, match="repeats has 2 entries but dim 0 of the input has size 3"):
        vt.repeat_interleave(V(R(3), device), V([1, 2], device, vt.int64), 0)
    with pytest.raises(ValueError, match="non-negative"):
        vt.repeat_interleave(V(R(3), device), V([1, -2, 1], device, vt.int64), 0)
    with pytest.raises(ValueError, match="non-negative"):
        vt.repeat_interleave(V(R(3), device), -1)
    with pytest.raises(vt.DTypeError, match="integer tensor"):
        vt.repeat_interleave(V(R(3), device), V([1.0, 2.0, 1.0], device), 0)


@pytest.mark.parametrize("ishape,jshape,dim", [((3, 4), (3, 2), 1), ((3, 4), (1, 6), 1), ((2, 1, 4), (2, 3, 2), 2),
                                               ((3, 4), (5,), None), ((4, 3), (2, 3), 0)])
def test_take_along_dim(ishape, jshape, dim, device):
    a = R(*ishape)
    n = a.size if dim is None else ishape[dim]
    idx = np.random.randint(0, n, size=jshape)
    grads_match(lambda x: vt.take_along_dim(x, V(idx, device, vt.int64), dim),
                lambda x: torch.take_along_dim(x, torch.from_numpy(idx), dim), [a], device)


def test_take_along_dim_sort_and_errors(device):
    a = R(3, 5)
    x = V(a, device)
    close(x.take_along_dim(vt.argsort(x, 1), 1), np.sort(a, 1))
    with pytest.raises(vt.ShapeError, match="same number of dims"):
        vt.take_along_dim(x, V([0], device, vt.int64), 1)
    with pytest.raises(TypeError, match="integer"):
        vt.take_along_dim(x, V([[0.0]], device), 1)
    with pytest.raises(vt.ShapeError, match="do not broadcast"):
        vt.take_along_dim(x, V(np.zeros((2, 2), np.int64), device, vt.int64), 1)


# ================================================================== diff, hstack, vstack
@pytest.mark.parametrize("n,dim", [(1, -1), (2, 0), (3, 1), (0, 1), (6, 1)])
def test_diff(n, dim, device):
    grads_match(lambda x: vt.diff(x, n, dim), lambda x: torch.diff(x, n, dim), [R(4, 5)], device)


def test_diff_prepend_append_dtypes(device):
    a, p, q = R(3, 4), R(3, 2), R(3, 1)
    grads_match(lambda x, y, z: vt.diff(x, 2, 1, y, z), lambda x, y, z: torch.diff(x, 2, 1, y, z), [a, p, q], device)
    for dt in FLOATS + INTS + [vt.bool]:
        b = rand_of((7,), dt)
        close(vt.diff(V(b, device, dt)), torch.diff(T(b, TDT[dt.name])), msg=dt.name)
    _, v = noncontig_v(a, device)
    close(v.diff(dim=0), np.diff(a, axis=0), rtol=1e-12)
    with pytest.raises(vt.ShapeError, match="at least one dimension"):
        vt.diff(V(1.0, device))
    with pytest.raises(vt.ShapeError, match="prepend must have the same number of dims"):
        vt.diff(V(R(3, 4), device), prepend=V(R(4), device))


def test_hstack_vstack(device):
    grads_match(lambda a, b: vt.hstack([a, b]), lambda a, b: torch.hstack([a, b]), [R(3), R(2)], device)
    grads_match(lambda a, b: vt.hstack((a, b)), lambda a, b: torch.hstack((a, b)), [R(3, 1), R(3, 4)], device)
    grads_match(lambda a, b, c: vt.vstack([a, b, c]), lambda a, b, c: torch.vstack([a, b, c]),
                [R(3), R(2, 3), R(1, 3)], device)
    b = R(2)
    close(vt.hstack([V(1.0, device), V(b, device)]), torch.hstack([torch.tensor(1.0, dtype=torch.float64), T(b)]))
    close(vt.vstack([V(1, device, vt.int32), V(2, device, vt.int64)]),
          torch.vstack([torch.tensor(1, dtype=torch.int32), torch.tensor(2)]))
    with pytest.raises(vt.ShapeError):
        vt.vstack([V(R(3), device), V(R(4), device)])
    with pytest.raises(ValueError, match="non-empty"):
        vt.hstack([])


# ================================================================== clamp_min / clamp_max
def test_clamp_min_max(device):
    a = R(4, 5)
    a[0, 0] = 0.25
    grads_match(lambda x: vt.clamp_min(x, 0.25), lambda x: torch.clamp_min(x, 0.25), [a], device)
    grads_match(lambda x: x.clamp_max(-0.1), lambda x: x.clamp_max(-0.1), [a], device)
    grads_match(lambda x, m: vt.clamp_min(x, m), lambda x, m: torch.clamp_min(x, m), [a, R(5)], device)
    grads_match(lambda x, m: x.clamp_max(m), lambda x, m: x.clamp_max(m), [a, R(4, 1)], device)
    for dt in FLOATS + [vt.int32, vt.int64, vt.uint8, vt.int8]:
        b = rand_of((6,), dt)
        close(vt.clamp_min(V(b, device, dt), 1), torch.clamp_min(T(b, TDT[dt.name]), 1), msg=dt.name)
        close(vt.clamp_max(V(b, device, dt), 1), torch.clamp_max(T(b, TDT[dt.name]), 1), msg=dt.name)
    x = V(a, device)
    assert x.clamp_min_(0.0) is x
    close(x, np.maximum(a, 0.0))
    x.clamp_max_(0.5)
    close(x, np.clip(a, 0.0, 0.5))


# ================================================================== tril_indices / triu_indices
@pytest.mark.parametrize("row,col,off", [(3, 3, 0), (4, 3, 1), (3, 5, -1), (3, 4, 10), (3, 4, -10), (0, 3, 0),
                                         (1, 1, 0)])
def test_tri_indices(row, col, off, device):
    close(vt.tril_indices(row, col, off, device=device), torch.tril_indices(row, col, off))
    close(vt.triu_indices(row, col, off, device=device), torch.triu_indices(row, col, off))
    r = vt.triu_indices(row, col, off, dtype=vt.int32, device=device)
    assert r.dtype is vt.int32 and r.device.type == device


def test_tri_indices_errors():
    with pytest.raises(ValueError, match="non-negative"):
        vt.tril_indices(-1, 3)
    with pytest.raises(TypeError, match="row must be an int"):
        vt.triu_indices(2.5, 3)
    with pytest.raises(vt.DTypeError, match="int64 or vt.int32"):
        vt.tril_indices(2, 3, dtype=vt.float32)


# ================================================================== cummax / cummin / logcumsumexp
@pytest.mark.parametrize("name", ["cummax", "cummin"])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_cummax_cummin(name, dim, device):
    a = R(4, 5, 3)
    vs, ts = V(a, device, rg=True), T(a, rg=True)
    vo, to = getattr(vt, name)(vs, dim), getattr(torch, name)(ts, dim)
    close(vo.values, to.values)
    close(vo.indices, to.indices)
    up = R(*a.shape)
    vo.values.backward(V(up, device))
    to.values.backward(T(up))
    close(vs.grad, ts.grad)
    m = getattr(V(a, device), name)(dim)
    close(m[0], to.values)


@pytest.mark.parametrize("name", ["cummax", "cummin"])
def test_cummax_cummin_ties_nan_dtypes(name, device):
    a = np.array([1.0, np.nan, 2.0, np.nan, 5.0, -1.0])
    vo, to = getattr(vt, name)(V(a, device), 0), getattr(torch, name)(T(a), 0)
    close(vo.values, to.values)
    close(vo.indices, to.indices)
    for dt in FLOATS + INTS + [vt.bool]:
        b = np.random.randint(0, 3, size=(3, 8)).astype(np.float64)
        b = b > 0 if dt is vt.bool else b
        vo, to = getattr(vt, name)(V(b, device, dt), 1), getattr(torch, name)(T(b, TDT[dt.name]), 1)
        close(vo.values, to.values, msg=dt.name)
        close(vo.indices, to.indices, msg=dt.name)
    vo = getattr(vt, name)(V(3.0, device), 0)
    assert vo.values.item() == 3.0 and vo.indices.item() == 0


def test_scan_step_path_matches_numpy_accumulate():
    """The log-step scan (the CuPy path) agrees with ufunc.accumulate, on numpy."""
    from vibetensor.core.ops.extra_reduce import _scan, _cum_extreme_indices
    for n in [1, 2, 5, 8, 13]:
        a = np.round(R(3, n, 2) * 2)
        for fn in ["maximum", "minimum", "logaddexp"]:
            np.testing.assert_allclose(_scan(np, fn, a, 1, force_steps=True), getattr(np, fn).accumulate(a, 1),
                                       rtol=1e-13)
        a[0, 0, 0] = np.nan
        for fn in ["maximum", "minimum"]:
            np.testing.assert_array_equal(_cum_extreme_indices("c", fn, a, 1, True),
                                          _cum_extreme_indices("c", fn, a, 1, False))


@pytest.mark.parametrize("dim", [0, 1])
def test_logcumsumexp(dim, device):
    a = R(5, 4) * 3
    a[1, 1] = 40.0
    vs, ts = V(a, device, rg=True), T(a, rg=True)
    vo, to = vt.logcumsumexp(vs, dim), torch.logcumsumexp(ts, dim)
    close(vo, to)
    up = R(*a.shape)  # mixed signs: both halves of the stable backward
    vo.backward(V(up, device))
    to.backward(T(up))
    close(vs.grad, ts.grad, rtol=1e-9)
    close(vs.logcumsumexp(dim), to)
    big = np.array([-np.inf, 0.0, 1000.0, -1000.0, np.inf, 3.0])
    close(vt.logcumsumexp(V(big, device), 0), torch.logcumsumexp(T(big), 0))
    from vibetensor.core.ops.extra_reduce import logcumsumexp as op
    close(op(V(a, device), dim, force_steps=True), to, rtol=1e-12)


def test_logcumsumexp_dtypes_and_errors(device):
    for dt in FLOATS:
        a = R(3, 6)
        close(vt.logcumsumexp(V(a, device, dt), 1), torch.logcumsumexp(T(a, TDT[dt.name]), 1), msg=dt.name)
    with pytest.raises(vt.DTypeError, match="floating-point"):
        vt.logcumsumexp(V([1, 2], device, vt.int64), 0)
    close(vt.logcumsumexp(V(2.0, device), 0), np.array(2.0))


# ================================================================== var_mean / std_mean / aminmax
@pytest.mark.parametrize("name", ["var_mean", "std_mean"])
@pytest.mark.parametrize("kw", [{}, {"dim": 1}, {"dim": (0, 2), "keepdim": True}, {"dim": -1, "correction": 0},
                                {"dim": 1, "unbiased": False}, {"dim": None, "correction": 2}])
def test_var_std_mean(name, kw, device):
    a = R(3, 4, 5)
    vs, ts = V(a, device, rg=True), T(a, rg=True)
    vo, to = getattr(vt, name)(vs, **kw), getattr(torch, name)(ts, **kw)
    assert isinstance(vo, tuple) and len(vo) == 2
    close(vo[0], to[0], rtol=1e-10)
    close(vo[1], to[1], rtol=1e-10)
    u0, u1 = R(*to[0].shape), R(*to[1].shape)
    ((vo[0] * V(u0, device)).sum() + (vo[1] * V(u1, device)).sum()).backward()
    ((to[0] * T(u0)).sum() + (to[1] * T(u1)).sum()).backward()
    close(vs.grad, ts.grad, rtol=1e-9)


def test_var_mean_dtypes(device):
    for dt in FLOATS:
        a = R(4, 6)
        v, m = vt.var_mean(V(a, device, dt), 1)
        tv, tm = torch.var_mean(T(a, TDT[dt.name]), 1)
        close(v, tv, rtol=2e-2 if dt is vt.bfloat16 else None)
        close(m, tm)
    with pytest.raises(vt.DTypeError):
        vt.std_mean(V([1, 2], device, vt.int64))


@pytest.mark.parametrize("kw", [{}, {"dim": 0}, {"dim": -1, "keepdim": True}, {"keepdim": True}])
def test_aminmax(kw, device):
    a = R(4, 5)
    vs, ts = V(a, device, rg=True), T(a, rg=True)
    vo, to = vt.aminmax(vs, **kw), torch.aminmax(ts, **kw)
    close(vo.min, to.min)
    close(vo.max, to.max)
    (vo.min.sum() * 2 + vo.max.sum()).backward()
    (to.min.sum() * 2 + to.max.sum()).backward()
    close(vs.grad, ts.grad)
    for dt in FLOATS + INTS:
        b = rand_of((3, 4), dt)
        vo, to = V(b, device, dt).aminmax(dim=1), torch.aminmax(T(b, TDT[dt.name]), dim=1)
        close(vo[0], to[0])
        close(vo[1], to[1])
    with pytest.raises(IndexError, match="non-zero size"):
        vt.aminmax(V(np.zeros((0, 3)), device), dim=0)


# ================================================================== nansum / nanmean
@pytest.mark.parametrize("name", ["nansum", "nanmean"])
@pytest.mark.parametrize("kw", [{}, {"dim": 1}, {"dim": (0, 1), "keepdim": True}, {"dim": -1}])
def test_nansum_nanmean(name, kw, device):
    a = R(3, 4)
    a[0, 1] = a[2, 2] = a[1, :] = np.nan
    vs, ts = V(a, device, rg=True), T(a, rg=True)
    vo, to = getattr(vt, name)(vs, **kw), getattr(torch, name)(ts, **kw)
    close(vo, to, rtol=1e-12)
    up = R(*to.shape)
    vo.backward(V(up, device))
    to.backward(T(up))
    close(vs.grad, ts.grad, rtol=1e-12)
    close(getattr(V(a, device), name)(**kw), to, rtol=1e-12)


def test_nansum_nanmean_dtypes(device):
    for dt in FLOATS + INTS + [vt.bool]:
        a = rand_of((3, 5), dt)
        if dt.is_floating_point:
            a[1, 1] = np.nan
        close(vt.nansum(V(a, device, dt), 1), torch.nansum(T(a, TDT[dt.name]), 1), msg=dt.name)
        if dt.is_floating_point:
            close(vt.nanmean(V(a, device, dt), 1), torch.nanmean(T(a, TDT[dt.name]), 1), msg=dt.name)
    with pytest.raises(vt.DTypeError, match="nanmean: expected a floating-point"):
        vt.nanmean(V([1, 2], device, vt.int64))
    close(vt.nanmean(V([1, 2], device, vt.int64), dtype=vt.float32), np.array(1.5))


# ================================================================== median
@pytest.mark.parametrize("shape", [(7,), (6,), (3, 4), (1,), (2, 3, 5)])
def test_median_global(shape, device):
    a = np.round(R(*shape) * 2)  # ties: the gradient is shared among the equal elements, as PyTorch
    grads_match(lambda x: vt.median(x), lambda x: torch.median(x), [a], device)
    a[0 if len(shape) == 1 else (0,) * len(shape)] = np.nan
    close(vt.median(V(a, device)), torch.median(T(a)))


@pytest.mark.parametrize("dim,keepdim", [(0, False), (1, True), (-1, False)])
def test_median_dim(dim, keepdim, device):
    a = R(5, 4, 6)
    vs, ts = V(a, device, rg=True), T(a, rg=True)
    vo, to = vt.median(vs, dim, keepdim), torch.median(ts, dim, keepdim)
    close(vo.values, to.values)
    close(vo.indices, to.indices)
    up = R(*to.values.shape)
    vo.values.backward(V(up, device))
    to.values.backward(T(up))
    close(vs.grad, ts.grad)
    close(V(a, device).median(dim=dim, keepdim=keepdim)[0], to.values)


def test_median_ties_nan_dtypes(device):
    a = np.random.randint(0, 3, size=(4, 6)).astype(np.float64)
    a[2, 3] = np.nan
    for dt in FLOATS + INTS:
        b = a if dt.is_floating_point else np.nan_to_num(a, nan=1.0)
        x = V(b, device, dt)
        vo, to = vt.median(x, 1), torch.median(T(b, TDT[dt.name]), 1)
        close(vo.values, to.values, msg=dt.name)
        assert vo.indices.dtype is vt.int64
        picked = to_np64(x.gather(1, vo.indices.unsqueeze(1))).reshape(-1)  # ties: any index holding the value
        np.testing.assert_array_equal(picked, to_np64(vo.values), err_msg=dt.name)
        close(vt.median(x), torch.median(T(b, TDT[dt.name])), msg=dt.name)
    nan_row = vt.median(V(a, device), 1)
    assert nan_row.indices[2].item() == 3
    with pytest.raises(IndexError, match="empty"):
        vt.median(V(np.zeros(0), device))
    with pytest.raises(IndexError, match="non-zero size"):
        vt.median(V(np.zeros((0, 2)), device), 0)


# ================================================================== bincount / searchsorted / isin
def test_bincount(device):
    x = np.random.randint(0, 6, size=20)
    close(vt.bincount(V(x, device, vt.int64)), torch.bincount(torch.from_numpy(x)))
    close(V(x, device, vt.int32).bincount(minlength=10), torch.bincount(torch.from_numpy(x).int(), minlength=10))
    close(vt.bincount(V(np.zeros(0), device, vt.int64)), torch.bincount(torch.zeros(0, dtype=torch.int64)))
    for dt in [vt.float32, vt.float64]:
        w = R(20)
        close(vt.bincount(V(x, device, vt.int64), V(w, device, dt)),
              torch.bincount(torch.from_numpy(x), T(w, TDT[dt.name])), rtol=1e-5)
    w = V(R(20), device, rg=True)
    out = vt.bincount(V(x, device, vt.int64), w, 8)
    up = R(8)
    out.backward(V(up, device))
    close(w.grad, up[x])  # d out[b] / d w[i] = [x[i] == b]
    with pytest.raises(ValueError, match="non-negative, got -1"):
        vt.bincount(V([1, -1], device, vt.int64))
    with pytest.raises(vt.ShapeError, match="1-d"):
        vt.bincount(V([[1]], device, vt.int64))
    with pytest.raises(vt.DTypeError, match="integer"):
        vt.bincount(V([1.0], device))


@pytest.mark.parametrize("right", [False, True])
def test_searchsorted(right, device):
    seq = np.sort(np.round(R(10) * 3))
    vals = np.round(R(3, 4) * 4)
    close(vt.searchsorted(V(seq, device), V(vals, device), right=right),
          torch.searchsorted(T(seq), T(vals), right=right))
    side = "right" if right else "left"
    close(vt.searchsorted(V(seq, device), V(vals, device), side=side),
          torch.searchsorted(T(seq), T(vals), side=side))
    seq2 = np.sort(np.round(R(3, 7) * 3), axis=1)
    close(vt.searchsorted(V(seq2, device), V(vals[:, :2], device), right=right),
          torch.searchsorted(T(seq2), T(vals[:, :2]), right=right))
    close(vt.searchsorted(V(seq, device), 0.5, right=right), torch.searchsorted(T(seq), 0.5, right=right))
    perm = np.random.permutation(10)
    unsorted = seq[perm]
    sorter = np.argsort(unsorted, kind="stable")
    close(vt.searchsorted(V(unsorted, device), V(vals, device), right=right, sorter=V(sorter, device, vt.int64)),
          torch.searchsorted(T(unsorted), T(vals), right=right, sorter=torch.from_numpy(sorter)))
    r = vt.searchsorted(V(seq, device, vt.int64), V(vals, device, vt.int64), out_int32=True, right=right)
    close(r, torch.searchsorted(T(seq, torch.int64), T(vals, torch.int64), out_int32=True, right=right))


def test_searchsorted_errors(device):
    with pytest.raises(vt.ShapeError, match="same leading dims"):
        vt.searchsorted(V(R(3, 4), device), V(R(2, 4), device))
    with pytest.raises(ValueError, match="contradicts"):
        vt.searchsorted(V(R(3), device), V(R(2), device), right=True, side="left")


def test_isin(device):
    a = np.random.randint(0, 10, size=(4, 5))
    b = np.random.randint(0, 10, size=(6,))
    for dt in [vt.int64, vt.int32, vt.float32, vt.float16, vt.bfloat16, vt.uint8]:
        for inv in [False, True]:
            close(vt.isin(V(a, device, dt), V(b, device, dt), invert=inv),
                  torch.isin(T(a, TDT[dt.name]), T(b, TDT[dt.name]), invert=inv))
    close(vt.isin(V(a, device, vt.int64), 3), torch.isin(torch.from_numpy(a), 3))
    close(vt.isin(3, V(b, device, vt.int64)), torch.isin(3, torch.from_numpy(b)))
    close(vt.isin(V(a, device, vt.int64), V(b.reshape(2, 3), device, vt.int64)),
          torch.isin(torch.from_numpy(a), torch.from_numpy(b.reshape(2, 3))))


# ================================================================== xlogy, logit, erfinv, signbit
def test_xlogy(device):
    x, y = R(3, 4), np.abs(R(4)) + 0.1
    x[0, 0] = x[1, 2] = 0.0
    grads_match(lambda a, b: vt.xlogy(a, b), lambda a, b: torch.xlogy(a, b), [x, y], device)
    grads_match(lambda a: a.xlogy(2.5), lambda a: a.xlogy(2.5), [x], device)
    grads_match(lambda b: vt.xlogy(2.0, b), lambda b: torch.xlogy(2.0, b), [y], device)
    grads_match(lambda a: vt.xlogy(a, 0.0), lambda a: torch.xlogy(a, 0.0), [np.abs(x) + 1], device)
    special = np.array([0.0, 0.0, 0.0, 1.0, -1.0, 2.0])
    yy = np.array([0.0, np.nan, -1.0, 0.0, 2.0, np.inf])
    close(vt.xlogy(V(special, device), V(yy, device)), torch.xlogy(T(special), T(yy)))
    for dt in FLOATS + [vt.int64, vt.int32, vt.bool]:
        a, b = rand_of((5,), dt), np.abs(rand_of((5,), dt)) + (0 if dt is vt.bool else 1)
        close(vt.xlogy(V(a, device, dt), V(b, device, dt)), torch.xlogy(T(a, TDT[dt.name]), T(b, TDT[dt.name])),
              msg=dt.name, rtol=1e-5 if dt in (vt.int64, vt.int32, vt.bool) else None)
    z = V(x, device)
    z.xlogy_(V(y, device))
    close(z, torch.xlogy(T(x), T(y)))


@pytest.mark.parametrize("eps", [None, 0.2, 1e-6])
def test_logit(eps, device):
    a = np.random.rand(4, 5) * 0.98 + 0.01
    a[0, 0], a[0, 1] = 0.1, 0.95
    grads_match(lambda x: vt.logit(x, eps), lambda x: torch.logit(x, eps), [a], device)
    grads_match(lambda x: x.logit(eps=eps), lambda x: x.logit(eps=eps), [a], device)
    out = np.array([-0.5, 0.0, 1.0, 1.5])
    close(vt.logit(V(out, device), eps), torch.logit(T(out), eps))
    vs, ts = V(out, device, rg=True), T(out, rg=True)
    vt.logit(vs, eps).sum().backward()
    torch.logit(ts, eps).sum().backward()
    close(vs.grad, ts.grad)
    for dt in FLOATS:
        close(vt.logit(V(a, device, dt), eps), torch.logit(T(a, TDT[dt.name]), eps), msg=dt.name, rtol=2e-2,
              atol=2e-2)
    close(vt.logit(V([0, 1], device, vt.int64)), torch.logit(torch.tensor([0, 1])))
    x = V(a, device)
    x.logit_()
    close(x, torch.logit(T(a)))


def test_erfinv(device):
    a = np.random.rand(3, 7) * 1.98 - 0.99
    grads_match(lambda x: vt.erfinv(x), lambda x: torch.erfinv(x), [a], device, rtol=1e-9)
    grads_match(lambda x: x.erfinv(), lambda x: x.erfinv(), [a[:, :2]], device, rtol=1e-9)
    edge = np.array([-1.0, 1.0, 1.5, -2.0, 0.0, np.nan, 1e-300])
    close(vt.erfinv(V(edge, device)), torch.erfinv(T(edge)))
    for dt in FLOATS:
        close(vt.erfinv(V(a, device, dt)), torch.erfinv(T(a, TDT[dt.name])), msg=dt.name, rtol=2e-2, atol=2e-2)
    close(vt.erfinv(V([0, 1], device, vt.int64)), torch.erfinv(torch.tensor([0, 1])))
    x = V(a, device)
    x.erfinv_()
    close(x, torch.erfinv(T(a)), rtol=1e-12)


def test_signbit(device):
    for dt in FLOATS + INTS + [vt.bool]:
        a = rand_of((3, 5), dt)
        close(vt.signbit(V(a, device, dt)), torch.signbit(T(a, TDT[dt.name])), msg=dt.name)
    special = np.array([-0.0, 0.0, -np.inf, np.inf, -1e-30])
    for dt in FLOATS:
        close(V(special, device, dt).signbit(), torch.signbit(T(special, TDT[dt.name])), msg=dt.name)
    close(vt.signbit(V([-np.nan, np.nan], device)), np.array([True, False]))
    r = vt.signbit(V(R(3), device, rg=True))
    assert r.dtype is vt.bool and not r.requires_grad


# ================================================================== numel, type_as
def test_numel_type_as(device):
    x = V(R(3, 4), device)
    assert vt.numel(x) == 12 and vt.numel(V(2.0, device)) == 1 and vt.numel(V(np.zeros((0, 3)), device)) == 0
    y = x.type_as(V([1], device, vt.int32))
    assert y.dtype is vt.int32 and y.device == x.device
    assert x.type_as(x) is x
    g = V(R(3), device, vt.float32, rg=True)
    out = g.type_as(x)
    assert out.dtype is vt.float64
    out.sum().backward()
    assert g.grad.dtype is vt.float32
    with pytest.raises(TypeError, match="expected a tensor"):
        x.type_as(vt.float32)


def test_functions_and_methods_are_exported():
    names = ("einsum broadcast_to meshgrid diag diag_embed trace repeat_interleave take_along_dim diff hstack vstack "
             "clamp_min clamp_max tril_indices triu_indices cummax cummin logcumsumexp var_mean std_mean aminmax "
             "nansum nanmean median bincount searchsorted isin xlogy logit erfinv signbit numel").split()
    for n in names:
        assert callable(getattr(vt, n)), n
    for n in ("broadcast_to diag diag_embed trace repeat_interleave take_along_dim diff clamp_min clamp_max cummax "
              "cummin logcumsumexp aminmax nansum nanmean median bincount xlogy logit erfinv signbit type_as "
              "clamp_min_ clamp_max_ xlogy_ logit_ erfinv_").split():
        assert callable(getattr(vt.Tensor, n)), n
    assert math.isfinite(vt.trace(vt.eye(3)).item())


# ================================================================== non-contiguous inputs, one test for many ops
NONCONTIG = [
    ("cummax", lambda m, x: m.cummax(x, 1)[0]), ("cummin", lambda m, x: m.cummin(x, 0)[1]),
    ("logcumsumexp", lambda m, x: m.logcumsumexp(x, 1)), ("median", lambda m, x: m.median(x, 1)[0]),
    ("median_all", lambda m, x: m.median(x)), ("nansum", lambda m, x: m.nansum(x, 0)),
    ("nanmean", lambda m, x: m.nanmean(x, 1)), ("repeat_interleave", lambda m, x: m.repeat_interleave(x, 2, 1)),
    ("xlogy", lambda m, x: m.xlogy(x, x * x + 0.5)), ("logit", lambda m, x: m.logit(m.sigmoid(x), 1e-3)),
    ("erfinv", lambda m, x: m.erfinv(m.tanh(x))), ("signbit", lambda m, x: m.signbit(x)),
    ("diag_embed", lambda m, x: m.diag_embed(x, 1)), ("trace", lambda m, x: m.trace(x)),
    ("aminmax", lambda m, x: m.aminmax(x, dim=1)[1]), ("var_mean", lambda m, x: m.var_mean(x, 0)[0]),
    ("std_mean", lambda m, x: m.std_mean(x, 1)[0]), ("clamp_min", lambda m, x: m.clamp_min(x, 0.1)),
    ("broadcast_to", lambda m, x: m.broadcast_to(x, (2, 5, 4))), ("take_along_dim", lambda m, x: m.take_along_dim(
        x, m.argsort(x, 1), 1)), ("einsum", lambda m, x: m.einsum("ij,ij->j", x, x)),
]


@pytest.mark.parametrize("name,fn", NONCONTIG, ids=[n for n, _ in NONCONTIG])
def test_noncontiguous_inputs(name, fn, device):
    a = R(5, 4)
    base, v = noncontig_v(a, device, rg=True)
    ta = T(a, rg=True)
    out, ref = fn(vt, v), fn(torch, ta)
    close(out, ref, rtol=1e-10, atol=1e-12)
    if out.dtype.is_floating_point:
        up = R(*ref.shape)
        out.backward(V(up, device))
        ref.backward(T(up))
        close(base.grad.transpose(0, 1), ta.grad, rtol=1e-9, atol=1e-11, msg="grad")
