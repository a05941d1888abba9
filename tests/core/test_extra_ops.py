"""The ops of core/ops/extra_*.py: values and gradients against PyTorch (float64, random inputs, odd shapes,
broadcasting, non-contiguous views), finite differences for einsum, every supported dtype, and errors."""

import numpy as np
import pytest

import vibetensor as vt
from tests.opcheck import check_op, to_np64
from tests.core._extra_ops_util import (
    R, FLOATS, INTS, TOL, TDT, V, T, close, noncontig_v, rand_of, grads_match, torch,
)


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
