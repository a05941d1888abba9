"""softmax / log_softmax, layer_norm, rms_norm, embedding, dropout: numpy float64 reference, finite
differences, PyTorch, dtypes, non-contiguous and empty inputs, errors."""
import numpy as np
import pytest

import vibetensor as vt
from tests.opcheck import assert_close, check_op, noncontig, mk

torch = pytest.importorskip("torch")
F = torch.nn.functional

FLOATS = [vt.float16, vt.bfloat16, vt.float32, vt.float64]




def np_softmax(x, d):
    e = np.exp(x - x.max(axis=d, keepdims=True))
    return e / e.sum(axis=d, keepdims=True)


def np_layer_norm(x, k, w=None, b=None, eps=1e-5):
    ax = tuple(range(x.ndim - k, x.ndim))
    y = (x - x.mean(axis=ax, keepdims=True)) / np.sqrt(x.var(axis=ax, keepdims=True) + eps)
    return y * (w if w is not None else 1) + (b if b is not None else 0)


def np_rms_norm(x, k, w=None, eps=np.finfo(np.float64).eps):
    ax = tuple(range(x.ndim - k, x.ndim))
    y = x / np.sqrt((x * x).mean(axis=ax, keepdims=True) + eps)
    return y * (w if w is not None else 1)


def torch_pair(arrays, device, dtype=vt.float64):
    vs = [mk(a, device, dtype, rg=True) for a in arrays]
    ts = [torch.tensor(v.detach().to(vt.float64).cpu().numpy(), requires_grad=True) for v in vs]
    return vs, ts


def backward_both(out, ref, device):
    g = np.random.randn(*ref.shape)
    out.backward(mk(g, device, out.dtype))
    ref.backward(torch.tensor(g))


# ---------------------------------------------------------------------------------------------- softmax

@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_log_softmax_grads(dim, device):
    x = np.random.randn(3, 4, 5)
    check_op(lambda t: vt.softmax(t, dim), lambda a: np_softmax(a, dim), [x], device=device)
    check_op(lambda t: vt.log_softmax(t, dim), lambda a: np.log(np_softmax(a, dim)), [x], device=device)
    check_op(lambda t: t.softmax(dim), lambda a: np_softmax(a, dim), [x], device=device,
             make=lambda a: noncontig(a, device))


def test_softmax_stable_and_edge_cases(device):
    x = mk(np.array([[1000.0, 1001.0, 999.0], [-1000.0, -1000.0, -1000.0]]), device)
    assert_close(vt.softmax(x, 1), np_softmax(x.cpu().numpy(), 1))
    assert_close(vt.log_softmax(x, 1), np.log(np_softmax(x.cpu().numpy(), 1)))
    assert_close(vt.softmax(mk(np.array(3.0), device), 0), np.array(1.0))
    e = vt.softmax(mk(np.zeros((0, 4)), device), 1)
    assert tuple(e.shape) == (0, 4)
    r = vt.log_softmax(mk(np.array([[-np.inf, 0.0]]), device), 1).cpu().numpy()
    assert r[0, 0] == -np.inf and r[0, 1] == 0.0


@pytest.mark.parametrize("dtype", FLOATS)
def test_softmax_dtypes(dtype, device):
    x = mk(np.random.randn(4, 33) * 3, device, dtype, rg=True)
    ref = np_softmax(x.detach().to(vt.float64).cpu().numpy(), -1)
    y = vt.softmax(x, -1)
    assert y.dtype is dtype
    assert_close(y, ref, dtype=dtype)
    g = np.random.randn(4, 33)
    y.backward(mk(g, device, dtype))
    gd = mk(g, device, dtype).to(vt.float64).cpu().numpy()
    assert x.grad.dtype is dtype
    assert_close(x.grad, (gd - (gd * ref).sum(-1, keepdims=True)) * ref, dtype=dtype)
    z = vt.log_softmax(x.detach(), 1)
    assert z.dtype is dtype
    assert_close(z, np.log(ref), dtype=dtype)


def test_softmax_dtype_argument_and_errors(device):
    x = mk(np.random.randn(2, 3), device, vt.float32, rg=True)
    y = vt.softmax(x, 1, dtype=vt.float64)
    assert y.dtype is vt.float64
    y.sum().backward()
    assert x.grad.dtype is vt.float32
    with pytest.raises(vt.DTypeError, match="floating"):
        vt.softmax(vt.tensor([1, 2, 3], device=device), 0)
    with pytest.raises(IndexError, match="out of range"):
        vt.softmax(x, 2)


# ---------------------------------------------------------------------------------------------- norms

def test_layer_norm_grads(device):
    r = np.random.randn
    check_op(lambda x, w, b: vt.layer_norm(x, (4,), w, b), lambda x, w, b: np_layer_norm(x, 1, w, b),
             [r(3, 4), r(4), r(4)], device=device)
    check_op(lambda x: vt.layer_norm(x, [2, 3], eps=1e-3), lambda x: np_layer_norm(x, 2, eps=1e-3),
             [r(2, 2, 3)], device=device)
    check_op(lambda x, b: vt.layer_norm(x, 5, bias=b), lambda x, b: np_layer_norm(x, 1, None, b),
             [r(3, 5), r(5)], device=device, make=lambda a: noncontig(a, device))


def test_rms_norm_grads(device):
    r = np.random.randn
    check_op(lambda x, w: vt.rms_norm(x, (4,), w), lambda x, w: np_rms_norm(x, 1, w), [r(3, 4), r(4)], device=device)
    check_op(lambda x: vt.rms_norm(x, (2, 3), eps=1e-4), lambda x: np_rms_norm(x, 2, eps=1e-4), [r(2, 2, 3)],
             device=device)


@pytest.mark.parametrize("dtype", FLOATS)
def test_norms_match_torch(dtype, device):
    x, w, b = np.random.randn(2, 3, 8), np.random.randn(8), np.random.randn(8)
    (vx, vw, vb), (tx, tw, tb) = torch_pair([x, w, b], device, dtype)
    out, ref = vt.layer_norm(vx, (8,), vw, vb), F.layer_norm(tx, (8,), tw, tb)
    assert out.dtype is dtype
    backward_both(out, ref, device)
    assert_close(out, ref.detach().numpy(), dtype=dtype)
    for v, t in ((vx, tx), (vw, tw), (vb, tb)):
        assert v.grad.dtype is dtype
        assert_close(v.grad, t.grad.numpy(), dtype=dtype, rtol=5e-2 if dtype.itemsize == 2 else None)
    (vx, vw), (tx, tw) = torch_pair([x, w], device, dtype)
    out, ref = vt.rms_norm(vx, [8], vw), F.rms_norm(tx.to(_torch_dt(dtype)), [8], tw.to(_torch_dt(dtype)))
    assert_close(out, ref.detach().double().numpy(), dtype=dtype)


def _torch_dt(dtype):
    return getattr(torch, dtype.name)


def test_rms_norm_default_eps_matches_torch():
    x = np.random.randn(3, 4) * 1e-4  # small enough that eps matters
    for dt in (vt.float32, vt.float64):
        ref = F.rms_norm(torch.tensor(x, dtype=_torch_dt(dt)), (4,)).double().numpy()
        assert_close(vt.rms_norm(vt.tensor(x, dtype=dt), (4,)), ref, dtype=dt)


def test_norm_errors_and_empty(device):
    x = mk(np.random.randn(2, 3), device)
    with pytest.raises(vt.ShapeError, match=r"normalized_shape \(4,\).*\(2, 3\)"):
        vt.layer_norm(x, (4,))
    with pytest.raises(vt.ShapeError, match="weight has shape"):
        vt.layer_norm(x, (3,), mk(np.ones(4), device))
    with pytest.raises(vt.ShapeError, match="normalized_shape"):
        vt.rms_norm(x, (2,))
    e = mk(np.zeros((0, 3)), device, rg=True)
    out = vt.layer_norm(e, (3,))
    assert tuple(out.shape) == (0, 3)


# ---------------------------------------------------------------------------------------------- embedding

@pytest.mark.parametrize("padding_idx", [None, 2, -1])
def test_embedding_matches_torch(padding_idx, device):
    ids = np.array([[0, 2, 2, 5], [5, 1, 2, 0]])
    w = np.random.randn(6, 3)
    vw = mk(w, device, rg=True)
    tw = torch.tensor(w, requires_grad=True)
    out = vt.embedding(vt.tensor(ids, device=device), vw, padding_idx=padding_idx)
    ref = F.embedding(torch.tensor(ids), tw, padding_idx=padding_idx)
    backward_both(out, ref, device)
    assert_close(out, ref.detach().numpy())
    assert_close(vw.grad, tw.grad.numpy())
    if padding_idx is not None:
        assert not vw.grad.cpu().numpy()[padding_idx].any()


def test_embedding_many_repeats_and_dtypes(device):
    ids = np.random.randint(0, 5, size=(40, 3))  # rows repeat: the sorted-reduce path on CPU
    w = np.random.randn(5, 4)
    g = np.random.randn(40, 3, 4)
    for dtype in FLOATS:
        vw = mk(w, device, dtype, rg=True)
        out = vt.embedding(vt.tensor(ids, device=device, dtype=vt.int32), vw)
        assert out.dtype is dtype
        out.backward(mk(g, device, dtype))
        gd = mk(g, device, dtype).to(vt.float64).cpu().numpy()
        ref = np.zeros((5, 4))
        np.add.at(ref, ids.reshape(-1), gd.reshape(-1, 4))
        assert_close(vw.grad, ref, dtype=dtype, rtol=5e-2 if dtype.itemsize == 2 else None,
                     atol=0.3 if dtype.itemsize == 2 else None)


def test_embedding_errors(device):
    w = mk(np.random.randn(4, 2), device)
    with pytest.raises(IndexError, match="index 7 is out of range for a weight with 4 rows"):
        vt.embedding(vt.tensor([1, 7], device=device), w).sum().item()  # CUDA: raised at the sync
    with pytest.raises(vt.DTypeError, match="integer"):
        vt.embedding(mk(np.array([1.0]), device), w)
    e = vt.embedding(vt.tensor(np.zeros((0, 3), dtype=np.int64), device=device), w)
    assert tuple(e.shape) == (0, 3, 2)


# ---------------------------------------------------------------------------------------------- dropout

def test_dropout_mask_scale_and_grad(device):
    x = mk(np.ones((200, 50)), device, vt.float32, rg=True)
    y = vt.dropout(x, 0.3)
    a = y.detach().cpu().numpy()
    kept = a != 0
    np.testing.assert_allclose(a[kept], 1 / 0.7, rtol=1e-6)
    assert 0.65 < kept.mean() < 0.75
    y.sum().backward()
    np.testing.assert_allclose(x.grad.cpu().numpy(), kept / 0.7, rtol=1e-6)


def test_dropout_modes_and_generator(device):
    x = mk(np.random.randn(10, 10), device, vt.float32)
    assert vt.dropout(x, 0.5, training=False) is x
    assert vt.dropout(x, 0.0) is x
    assert not vt.dropout(x, 1.0).cpu().numpy().any()
    g1, g2 = vt.Generator(device), vt.Generator(device)
    g1.manual_seed(7)
    g2.manual_seed(7)
    np.testing.assert_array_equal(vt.dropout(x, 0.5, generator=g1).cpu().numpy(),
                                  vt.dropout(x, 0.5, generator=g2).cpu().numpy())
    with pytest.raises(ValueError, match="between 0 and 1"):
        vt.dropout(x, 1.5)
