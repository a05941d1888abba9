"""Indexing ops: getitem / index_put / setitem, gather/scatter family, masked ops, take (sorting ops
are in test_index_sort.py). Values vs numpy (and PyTorch), gradients vs finite differences."""
import numpy as np
import pytest

import vibetensor as vt
from tests.opcheck import assert_close, check_op, noncontig, ALL

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

R = np.random.randn
ALL_DTYPES = ALL


from tests.core._index_util import _rand_of, _skip_cuda_bf16  # noqa: E402


BASIC = [
    ("int", lambda: (1,)), ("neg_int", lambda: (-1, 2)), ("slice", lambda: (slice(1, 3),)),
    ("step", lambda: (slice(None), slice(0, None, 2))), ("none", lambda: (None, 0, slice(None, None, 3))),
    ("ellipsis", lambda: (Ellipsis, 1)), ("ell_none", lambda: (0, Ellipsis, None)),
    ("full_int", lambda: (2, 3, 1)), ("oob_slice", lambda: (slice(-10, 10), slice(5, 10))),
]
ADVANCED = [
    ("list", lambda: ([0, 2, 2],)), ("tensor", lambda: (vt.tensor([[1, 0], [3, 3]]),)),
    ("neg_tensor", lambda: (slice(None), vt.tensor([-1, 0, -1]))),
    ("two_arrays", lambda: (vt.tensor([0, 3, 3]), slice(1, 4), vt.tensor([1, 1, 0]))),
    ("separated", lambda: (vt.tensor([0, 1]), slice(None), vt.tensor([1, 0]))),
    ("mask", lambda: (np.random.randn(4, 5) > 0,)), ("mask_tensor", lambda: (vt.tensor(np.random.randn(4) > 0),)),
    ("mask_last", lambda: (Ellipsis, vt.tensor([True, False, True]))),
    ("mask_and_int", lambda: (vt.tensor([True, False, True, True]), 1)),
    ("none_adv", lambda: (None, [1, 2], Ellipsis)), ("empty_list", lambda: ([],)),
    ("scalar_bool", lambda: (True,)), ("uint8_mask", lambda: (vt.tensor([1, 0, 1, 1], dtype=vt.uint8),)),
]


def _np_index(idx):
    return tuple(i.numpy() if isinstance(i, vt.Tensor) else i for i in idx)


def _np_index_torch_style(idx):
    return tuple(i.numpy().astype(bool) if isinstance(i, vt.Tensor) and i.dtype is vt.uint8 else
                 (i.numpy() if isinstance(i, vt.Tensor) else i) for i in idx)


@pytest.mark.parametrize("name,make", BASIC + ADVANCED, ids=[c[0] for c in BASIC + ADVANCED])
def test_getitem_values_and_grads(name, make, device):
    idx = make()
    nidx = _np_index_torch_style(idx)
    check_op(lambda x: x[idx], lambda a: np.asarray(a[nidx], dtype=np.float64), [R(4, 5, 3)], device=device)


@pytest.mark.parametrize("name,make", BASIC + ADVANCED[:5], ids=[c[0] for c in BASIC + ADVANCED[:5]])
def test_getitem_noncontiguous(name, make, device):
    idx = make()
    nidx = _np_index(idx)
    check_op(lambda x: x[idx], lambda a: np.asarray(a[nidx], dtype=np.float64), [R(4, 5, 3)], device=device,
             make=lambda a: noncontig(a, device))


@pytest.mark.skipif(torch is None, reason="PyTorch not installed")
@pytest.mark.filterwarnings("ignore:indexing with dtype torch.uint8")
@pytest.mark.parametrize("name,make", BASIC + ADVANCED, ids=[c[0] for c in BASIC + ADVANCED])
def test_getitem_matches_torch(name, make):
    idx = make()
    a = R(4, 5, 3)
    tidx = tuple(torch.from_numpy(i.numpy()) if isinstance(i, vt.Tensor) else
                 (torch.from_numpy(i) if isinstance(i, np.ndarray) else i) for i in idx)
    np.testing.assert_allclose(vt.tensor(a, dtype=vt.float64)[idx].numpy(), torch.tensor(a)[tidx].numpy())


def test_getitem_repeated_indices_accumulate_grad(device):
    x = vt.tensor(R(5), dtype=vt.float64, device=device, requires_grad=True)
    x[vt.tensor([0, 0, 3, 0], device=device)].sum().backward()
    assert_close(x.grad, np.array([3.0, 0, 0, 1, 0]))
    y = vt.tensor(R(3, 4), dtype=vt.float64, device=device, requires_grad=True)
    (y[[1, 1], 1:3] * 2).sum().backward()
    expect = np.zeros((3, 4))
    expect[1, 1:3] = 4
    assert_close(y.grad, expect)


def test_basic_index_is_a_view_advanced_is_a_copy(device):
    x = vt.tensor(np.arange(12.0).reshape(3, 4), device=device)
    v = x[1, 1:3]
    assert v._vc is x._vc
    v.fill_(-1.0)
    assert x.cpu().numpy()[1, 1] == -1 and x._version == 1
    s = x[2, 3]                      # a 0-d view, not a detached scalar
    s.fill_(100.0)
    assert x.cpu().numpy()[2, 3] == 100
    c = x[[0, 2]]
    assert c._vc is not x._vc
    c.fill_(-9.0)
    assert (x.cpu().numpy() == -9).sum() == 0


def test_getitem_errors():
    x = vt.zeros(3, 4)
    with pytest.raises(ValueError, match="negative steps.*flip"):
        x[::-1]
    with pytest.raises(ValueError, match="positive"):
        x[:, ::0]
    with pytest.raises(IndexError, match="index 3 is out of bounds for dimension 0 with size 3"):
        x[3]
    with pytest.raises(IndexError, match="index -5 is out of bounds for dimension 1 with size 4"):
        x[0, -5]
    with pytest.raises(IndexError, match="index 7 is out of bounds for dimension 1 with size 4"):
        x[:, vt.tensor([0, 7])]
    with pytest.raises(IndexError, match="index 5 is out of bounds for dimension 0 with size 3"):
        x[[0, 5]]
    with pytest.raises(IndexError, match="too many indices.*dimension 2"):
        x[0, 0, 0]
    with pytest.raises(IndexError, match=r"mask \(4,\).*\(3,\)"):
        x[vt.tensor([True, False, True, True])]
    with pytest.raises(IndexError, match="long, int, uint8 or bool"):
        x[vt.tensor([0.0, 1.0])]
    with pytest.raises(IndexError, match="single ellipsis"):
        x[..., ...]
    with pytest.raises(IndexError, match="valid indices"):
        x["a"]


@pytest.mark.parametrize("dt", ALL_DTYPES, ids=lambda d: d.name)
def test_getitem_every_dtype(dt, device):
    _skip_cuda_bf16(device, dt)
    a = _rand_of((4, 5), dt)
    x = vt.tensor(a, dtype=dt, device=device)
    m = np.random.randn(4, 5) > 0
    for got, want in [(x[1:3, ::2], a[1:3, ::2]), (x[[3, 0, 3]], a[[3, 0, 3]]), (x[vt.tensor(m, device=device)], a[m]),
                      (x[..., 2], a[..., 2]), (x[None, 1], a[None, 1])]:
        assert got.dtype is dt
        np.testing.assert_array_equal(got.cpu().numpy().astype(np.float64), want.astype(np.float64))


def test_getitem_empty(device):
    x = vt.zeros(0, 3, device=device, requires_grad=True)
    assert tuple(x[:, 1].shape) == (0,)
    assert tuple(x[vt.zeros(0, dtype=vt.int64, device=device)].shape) == (0, 3)
    y = vt.randn(4, 3, device=device, requires_grad=True)
    e = y[[]]
    assert tuple(e.shape) == (0, 3)
    (e.sum() + y[2:2].sum()).backward()
    assert float(y.grad.abs().sum()) == 0.0


# ------------------------------------------------------------------------------------------- index_put / setitem
def _np_put(a, idx, v, accumulate=False):
    out = a.copy()
    if accumulate:
        np.add.at(out, idx, v)
    else:
        out[idx] = v
    return out


PUT_CASES = [
    ("slice", (slice(1, 3),), (2, 4)), ("int_bcast", (1,), (4,)), ("scalar_bcast", (slice(None), 2), ()),
    ("list", ([0, 2],), (2, 4)), ("mask", (np.array([True, False, True]),), (1, 4)),
    ("two_arrays", ([0, 2], [1, 3]), (2,)), ("none_ell", (None, Ellipsis, slice(0, 2)), (3, 2)),
    ("leading_one", (0,), (1, 4)),
]


@pytest.mark.parametrize("name,idx,vshape", PUT_CASES, ids=[c[0] for c in PUT_CASES])
def test_index_put_values_and_grads(name, idx, vshape, device):
    vidx = tuple(vt.tensor(i) if isinstance(i, np.ndarray) else i for i in idx)
    check_op(lambda x, v: vt.index_put(x, vidx, v), lambda a, v: _np_put(a, idx, v.reshape(vshape[-1:] if name ==
             "leading_one" else vshape)), [R(3, 4), R(*vshape)], device=device)


def test_index_put_accumulate(device):
    idx = (np.array([0, 2, 0, 0]),)
    check_op(lambda x, v: vt.index_put(x, (vt.tensor(idx[0], device=x.device),), v, accumulate=True),
             lambda a, v: _np_put(a, idx, v, True), [R(3, 2), R(4, 2)], device=device)


def test_index_put_casts_value_and_errors(device):
    x = vt.zeros(2, 3, dtype=vt.int32, device=device)
    y = vt.index_put(x, (0,), vt.tensor([1.7, 2.2, -3.9], device=device))
    assert y.dtype is vt.int32
    np.testing.assert_array_equal(y.cpu().numpy(), [[1, 2, -3], [0, 0, 0]])
    assert float(x.abs().sum()) == 0  # out-of-place
    with pytest.raises(vt.ShapeError, match=r"value of shape \(2,\).*\(3,\)"):
        vt.index_put(x, (0,), vt.tensor([1, 2], device=device))


def test_setitem_with_grad_goes_through_index_put(device):
    a, b = R(4, 3), R(2, 3)
    x = vt.tensor(a, dtype=vt.float64, device=device, requires_grad=True)
    y = vt.tensor(b, dtype=vt.float64, device=device, requires_grad=True)
    z = x * 2.0
    z[vt.tensor([3, 1], device=device)] = y
    w = R(4, 3)
    (z * vt.tensor(w, dtype=vt.float64, device=device)).sum().backward()
    ref = a * 2
    ref[[3, 1]] = b
    assert_close(z, ref)
    gx = 2 * w
    gx[[3, 1]] = 0
    assert_close(x.grad, gx)
    assert_close(y.grad, w[[3, 1]])
    # a broadcast scalar-like value: its gradient sums over the positions it filled
    s = vt.tensor(1.5, dtype=vt.float64, device=device, requires_grad=True)
    q = x * 1.0
    q[:, 1] = s
    q.sum().backward()
    assert_close(s.grad, np.array(4.0))


def test_setitem_no_grad_paths(device):
    a = R(4, 5)
    x = vt.tensor(a, dtype=vt.float64, device=device)
    ref = a.copy()
    m = a > 0
    x[vt.tensor(m, device=device)] = 0.0
    ref[m] = 0.0
    x[1:3, ::2] = vt.tensor([7.0, 8.0, 9.0], dtype=vt.float64, device=device)
    ref[1:3, ::2] = [7.0, 8.0, 9.0]
    x[vt.tensor([0, 3], device=device), vt.tensor([4, 4], device=device)] = -1.0
    ref[[0, 3], [4, 4]] = -1.0
    x[..., 0] = 5
    ref[..., 0] = 5
    assert_close(x, ref)
    assert x._version == 4


# ------------------------------------------------------------------------------------------- gather / scatter
def _np_gather(a, dim, idx):
    out = np.empty(idx.shape)
    for pos in np.ndindex(*idx.shape):
        src = list(pos)
        src[dim] = idx[pos]
        out[pos] = a[tuple(src)]
    return out


def _np_scatter(a, dim, idx, src, add=False):
    out = a.copy()
    for pos in np.ndindex(*idx.shape):
        dst = list(pos)
        dst[dim] = idx[pos]
        v = src[pos] if np.ndim(src) else src
        out[tuple(dst)] = out[tuple(dst)] + v if add else v
    return out


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_gather_values_grads(dim, device):
    a = R(4, 5)
    d = dim % 2
    idx = np.random.randint(0, a.shape[d], size=(3, 4))
    ti = vt.tensor(idx, device=device)
    check_op(lambda x: x.gather(dim, ti), lambda x: _np_gather(x, d, idx), [a], device=device)
    check_op(lambda x: vt.gather(x, dim=dim, index=ti), lambda x: _np_gather(x, d, idx), [a], device=device)
    if torch is not None:
        np.testing.assert_allclose(vt.tensor(a).gather(dim, vt.tensor(idx)).numpy(),
                                   torch.tensor(a, dtype=torch.float32).gather(dim, torch.tensor(idx)).numpy())


@pytest.mark.parametrize("dim", [0, 1])
def test_scatter_and_scatter_add_values_grads(dim, device):
    a = R(4, 5)
    # unique positions for scatter (duplicates are last-write-wins, unordered in PyTorch)
    idx = np.stack([np.random.permutation(a.shape[dim])[:3] for _ in range(3)], axis=1 - dim)
    ti = vt.tensor(idx, device=device)
    src = R(4, 4)  # larger than index: only the index-shaped corner is used
    check_op(lambda x, s: x.scatter(dim, ti, s), lambda x, s: _np_scatter(x, dim, idx, s), [a, src], device=device)
    check_op(lambda x, s: vt.scatter(x, dim, ti, src=s), lambda x, s: _np_scatter(x, dim, idx, s), [a, src],
             device=device)
    check_op(lambda x: x.scatter(dim, ti, 2.5), lambda x: _np_scatter(x, dim, idx, 2.5), [a], device=device)
    dup = np.random.randint(0, a.shape[dim], size=(6, 3) if dim == 0 else (3, 6))
    td = vt.tensor(dup, device=device)
    check_op(lambda x, s: x.scatter_add(dim, td, s), lambda x, s: _np_scatter(x, dim, dup, s, add=True),
             [a, R(6, 6)], device=device)
    check_op(lambda x, s: x.scatter(dim, td, s, reduce="add"), lambda x, s: _np_scatter(x, dim, dup, s, add=True),
             [a, R(6, 6)], device=device)


def test_gather_scatter_errors():
    x = vt.zeros(3, 4)
    with pytest.raises(IndexError, match="index 4 is out of bounds for dimension 1 with size 4"):
        x.gather(1, vt.tensor([[0, 4]]))
    with pytest.raises(IndexError, match="index -1 is out of bounds"):
        x.scatter(0, vt.tensor([[-1]]), 1.0)
    with pytest.raises(vt.ShapeError, match="same number of dimensions"):
        x.gather(0, vt.tensor([0, 1]))
    with pytest.raises(vt.ShapeError, match=r"larger than input \(3, 4\) in dimension 1"):
        x.gather(0, vt.zeros(2, 5, dtype=vt.int64))
    with pytest.raises(vt.ShapeError, match="larger than src"):
        x.scatter_add(0, vt.zeros(2, 2, dtype=vt.int64), vt.ones(1, 2))
    with pytest.raises(IndexError, match="integer"):
        x.gather(0, vt.zeros(1, 1))
    with pytest.raises(IndexError, match=r"expected -2\.\.1"):
        x.gather(2, vt.zeros(1, 1, dtype=vt.int64))
    with pytest.raises(NotImplementedError, match="multiply"):
        x.scatter(0, vt.zeros(1, 1, dtype=vt.int64), 1.0, reduce="multiply")


# ------------------------------------------------------------------------------------------- index_* ops
def test_index_select_add_fill(device):
    a = R(4, 5)
    idx = np.array([3, 0, 3])
    ti = vt.tensor(idx, device=device)
    check_op(lambda x: x.index_select(1, ti), lambda x: np.take(x, idx, axis=1), [a], device=device)
    check_op(lambda x: vt.index_select(x, -2, ti), lambda x: np.take(x, idx, axis=0), [a], device=device)

    def np_index_add(x, s, alpha=1.0):
        out = x.copy()
        np.add.at(out, (slice(None), idx), s * alpha)
        return out
    check_op(lambda x, s: x.index_add(1, ti, s), np_index_add, [a, R(4, 3)], device=device)
    check_op(lambda x, s: x.index_add(1, ti, s, alpha=-2.0), lambda x, s: np_index_add(x, s, -2.0), [a, R(4, 3)],
             device=device)

    def np_index_fill(x, v=None):
        out = x.copy()
        out[:, [3, 0, -1]] = 1.25 if v is None else v
        return out
    tf = vt.tensor([3, 0, -1], device=device)  # index_fill allows negative indices (PyTorch)
    check_op(lambda x: x.index_fill(1, tf, 1.25), np_index_fill, [a], device=device)
    check_op(lambda x, v: x.index_fill(1, tf, v), np_index_fill, [a, np.array(0.5)], device=device)
    with pytest.raises(IndexError, match="index 5 is out of bounds for dimension 1 with size 5"):
        vt.zeros(2, 5).index_select(1, vt.tensor([5]))
    with pytest.raises(vt.ShapeError, match="vector"):
        vt.zeros(2, 5).index_select(1, vt.tensor([[1]]))
    with pytest.raises(vt.ShapeError, match=r"source should have shape \(2, 3\)"):
        vt.zeros(2, 5).index_add(1, vt.tensor([0, 1, 2]), vt.ones(2, 2))
    assert tuple(vt.zeros(2, 3).index_select(1, vt.tensor(1)).shape) == (2, 1)


def test_masked_fill_select_take(device):
    a = R(3, 4)
    m = R(4) > 0
    tm = vt.tensor(m, device=device)
    check_op(lambda x: x.masked_fill(tm, -2.0), lambda x: np.where(m, -2.0, x), [a], device=device)
    check_op(lambda x, v: x.masked_fill(tm, v), lambda x, v: np.where(m, v, x), [a, np.array(0.3)], device=device)
    m2 = R(2, 3, 1) > 0  # the mask broadcasts the result up (PyTorch's out-of-place rule)
    check_op(lambda x: x.masked_fill(vt.tensor(m2, device=device), 1.0), lambda x: np.where(m2, 1.0, x),
             [R(3, 4)], device=device)
    check_op(lambda x: x.masked_select(tm), lambda x: np.broadcast_to(x, (3, 4))[np.broadcast_to(m, (3, 4))],
             [a], device=device)
    check_op(lambda x: x.masked_select(vt.tensor(m2, device=device)),
             lambda x: np.broadcast_to(x, (2, 3, 4))[np.broadcast_to(m2, (2, 3, 4))], [R(3, 4)], device=device)
    idx = np.array([[0, 11], [-1, 5], [5, 5]])
    check_op(lambda x: x.take(vt.tensor(idx, device=device)), lambda x: x.reshape(-1)[idx], [a], device=device)
    x = vt.zeros(3, 4, dtype=vt.int16, device=device)
    y = x.masked_fill(tm, 7.9)
    assert y.dtype is vt.int16 and int(y.sum()) == 7 * 3 * int(m.sum())
    with pytest.raises(vt.DTypeError, match="bool mask"):
        vt.zeros(3).masked_fill(vt.tensor([1, 0, 1]), 1.0)
    with pytest.raises(vt.ShapeError, match="0-dimensional value"):
        vt.zeros(3).masked_fill(vt.tensor([True, False, True]), vt.ones(3))
    with pytest.raises(vt.ShapeError, match="do not broadcast"):
        vt.zeros(3).masked_fill(vt.tensor([True, False]), 1.0)
    with pytest.raises(IndexError, match="index 12 is out of bounds with size 12"):
        vt.zeros(3, 4).take(vt.tensor([12]))


def test_masked_fill_inplace_and_version(device):
    x = vt.zeros(2, 3, device=device)
    x.masked_fill_(vt.tensor([[True, False, True], [False, False, True]], device=device), 4.0)
    np.testing.assert_array_equal(x.cpu().numpy(), [[4, 0, 4], [0, 0, 4]])
    assert x._version == 1


@pytest.mark.parametrize("dt", ALL_DTYPES, ids=lambda d: d.name)
def test_index_ops_every_dtype(dt, device):
    _skip_cuda_bf16(device, dt)
    a = _rand_of((3, 4), dt)
    x = vt.tensor(a, dtype=dt, device=device)
    idx = np.array([[2, 0, 1, 1]])
    ti = vt.tensor(idx, device=device)
    m = np.array([True, False, True, False])
    src = _rand_of((1, 4), dt)
    sadd = a.copy()
    np.add.at(sadd, (idx, np.arange(4)[None]), src)
    pairs = [
        (x.gather(0, ti), np.take_along_axis(a, idx, 0)),
        (x.scatter(0, ti, vt.tensor(src, dtype=dt, device=device)), _np_scatter(a, 0, idx, src).astype(a.dtype)),
        (x.index_select(1, vt.tensor([3, 3], device=device)), a[:, [3, 3]]),
        (x.masked_select(vt.tensor(m, device=device)), a[:, m].reshape(-1)),
        (x.take(vt.tensor([0, 5], device=device)), a.reshape(-1)[[0, 5]]),
        (x.index_fill(0, vt.tensor([1], device=device), 1), np.concatenate([a[:1], np.ones((1, 4), a.dtype), a[2:]])),
        (x.masked_fill(vt.tensor(m, device=device), 1), np.where(m, np.ones((), a.dtype), a)),
    ]
    if dt is not vt.bool:
        pairs.append((x.scatter_add(0, ti, vt.tensor(src, dtype=dt, device=device)), sadd))
        pairs.append((x.index_add(0, vt.tensor([2, 2], device=device), vt.tensor(np.stack([src[0], src[0]]),
                      dtype=dt, device=device)), _index_add_ref(a, src[0])))
    for got, want in pairs:
        assert got.dtype is dt
        np.testing.assert_allclose(got.cpu().numpy().astype(np.float64), want.astype(np.float64),
                                   rtol=1e-2 if dt in (vt.float16, vt.bfloat16) else 1e-6)


def _index_add_ref(a, row):
    out = a.copy()
    out[2] = out[2] + row + row
    return out


# ------------------------------------------------------------------------------------------- CUDA specifics
@pytest.mark.gpu
def test_cuda_index_with_cpu_index_tensor_and_accumulating_dtypes():
    x = vt.arange(10, device="cuda").to(vt.float32)
    i = vt.tensor([1, 1, 9])                       # a CPU index tensor is moved to the data's device
    np.testing.assert_array_equal(x[i].cpu().numpy(), [1, 1, 9])
    for dt in (vt.float16, vt.float32, vt.float64, vt.int64, vt.int32, vt.int8, vt.uint8):
        z = vt.zeros(4, dtype=dt, device="cuda").index_add(0, vt.tensor([0, 0, 3], device="cuda"),
                                                           vt.ones(3, dtype=dt, device="cuda"))
        np.testing.assert_array_equal(z.cpu().numpy().astype(np.float64), [2, 0, 0, 1])


def test_tensor_arguments_by_keyword(device):
    a = R(3, 4)
    x = vt.tensor(a, dtype=vt.float64, device=device, requires_grad=True)
    i = vt.tensor([[0, 2, 1, 1]], device=device)
    m = vt.tensor(a > 0, device=device)
    out = (vt.gather(x, dim=0, index=i).sum() + x.index_select(dim=1, index=vt.tensor([1], device=device)).sum()
           + x.masked_fill(mask=m, value=0.0).sum() + vt.scatter_add(x, 0, index=i, src=x[:1] * 2).sum())
    out.backward()
    g = np.zeros((3, 4))
    np.add.at(g, (i.cpu().numpy(), np.arange(4)[None]), 1.0)
    g[:, 1] += 1
    g += np.where(a > 0, 0.0, 1.0)
    g += 1.0
    g[0] += 2.0
    assert_close(x.grad, g)


@pytest.mark.parametrize("dt", [vt.float16, vt.bfloat16, vt.float32], ids=lambda d: d.name)
def test_low_precision_grads(dt, device):
    _skip_cuda_bf16(device, dt)
    a = R(4, 5)
    x = vt.tensor(a, dtype=dt, device=device, requires_grad=True)
    idx = vt.tensor([3, 3, 0], device=device)
    (x[idx, 1:].sum() + x.gather(1, vt.tensor([[0, 0]] * 4, device=device)).sum()
     + x.index_select(0, idx).sum() + x.sort(1).values[:, :2].sum()).backward()
    assert x.grad.dtype is dt
    g = np.zeros((4, 5))
    np.add.at(g, ([3, 3, 0], slice(1, None)), 1.0)
    g[:, 0] += 2
    np.add.at(g, [3, 3, 0], 1.0)
    a16 = x.detach().to(vt.float64).cpu().numpy()
    order = np.argsort(a16, 1, kind="stable")[:, :2]
    np.put_along_axis(g, order, np.take_along_axis(g, order, 1) + 1, 1)
    assert_close(x.grad, g, dtype=dt)


def test_index_ops_on_empty(device):
    x = vt.randn(3, 0, device=device, requires_grad=True)
    e = vt.zeros(3, 0, dtype=vt.int64, device=device)
    parts = [x.gather(1, e), x.index_select(1, vt.zeros(0, dtype=vt.int64, device=device)),
             x.masked_select(vt.zeros(3, 0, dtype=vt.bool, device=device)), x.sort(1).values, x.topk(0, 1).values,
             x.take(vt.zeros(0, dtype=vt.int64, device=device)), x.scatter(1, e, 1.0), x.flip(1)]
    sum(p.sum() for p in parts).backward()
    assert tuple(x.grad.shape) == (3, 0)
    y = vt.randn(4, device=device)
    assert tuple(y.masked_select(y > 100).shape) == (0,)
    assert tuple(vt.unique(vt.zeros(0, device=device)).shape) == (0,)
    assert tuple(vt.zeros(2, 0, device=device).sort(0).indices.shape) == (2, 0)


def test_index_put_list_value_and_inplace(device):
    x = vt.zeros(2, 3, device=device)
    y = vt.index_put(x, (1,), [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(y.cpu().numpy(), [[0, 0, 0], [1, 2, 3]])
    x.index_put_((vt.tensor([0, 0], device=device), vt.tensor([2, 2], device=device)), vt.tensor(1.0, device=device),
                 accumulate=True)
    np.testing.assert_array_equal(x.cpu().numpy(), [[0, 0, 2], [0, 0, 0]])
    assert x._version == 1


def test_index_devices(monkeypatch):
    from vibetensor import _env
    monkeypatch.setenv("VT_CPU_DEVICES", "2")
    _env.reload()
    try:
        x = vt.arange(5, device="cpu:0")
        i = vt.tensor([4, 0], device="cpu:1")
        got = x[i]                       # index tensors follow the data (as a CPU index does for CUDA data)
        assert got.device == x.device and got.tolist() == [4, 0]
        with pytest.raises(vt.DeviceMismatchError, match="cpu:0, cpu:1"):
            x.gather(0, i)
        with pytest.raises(vt.DeviceMismatchError, match="move it"):
            vt.index_put(x, (0,), vt.tensor([1, 2], device="cpu:1")[:1].reshape(1))
    finally:
        monkeypatch.delenv("VT_CPU_DEVICES")
        _env.reload()


@pytest.mark.parametrize("index,value,err,match", [
    (lambda: vt.tensor([0.0, 1.0]), 2.0, IndexError, "tensors used as indices must be long, int, uint8 or bool"),
    (lambda: vt.tensor([True, False, True]), 1.0, IndexError, r"the shape of the mask \(3,\) at index 0 does not"),
    (lambda: 7, 1.0, IndexError, "index 7 is out of bounds for dimension 0 with size 4"),
    (lambda: 0, "x", TypeError, "cannot assign str 'x' to a tensor of dtype float32"),
    (lambda: slice(0, 2), vt.ones(3), vt.errors.ShapeError, r"could not broadcast input array from shape \(3,\)"),
])
def test_setitem_errors_say_what_is_wrong(index, value, err, match):
    a = vt.zeros(4)
    with pytest.raises(err, match=match):
        a[index()] = value
    assert a.tolist() == [0.0] * 4


def test_writing_a_read_only_tensor_says_so():
    ro = np.zeros(3)
    ro.flags.writeable = False
    for t in (vt.zeros(1).expand(3), vt.from_numpy(ro)):
        for write in (lambda: t.__setitem__(0, 1.0), lambda: t.copy_(vt.ones(3)), lambda: t.fill_(2),
                      lambda: t.zero_(), lambda: t.add_(1), lambda: t.uniform_()):
            with pytest.raises(RuntimeError, match=r"of shape \(3,\) is read-only .* write into a \.clone\(\)"):
                write()
