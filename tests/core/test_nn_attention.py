"""scaled_dot_product_attention: numpy float64 reference, finite differences, PyTorch (causal, bool and
float masks, GQA, fully masked rows), dropout, dtypes, errors."""
import math

import numpy as np
import pytest

import vibetensor as vt
from tests.opcheck import assert_close, check_op, mk

torch = pytest.importorskip("torch")
F = torch.nn.functional




def np_sdpa(q, k, v, mask=None, causal=False, scale=None):
    s = q @ np.swapaxes(k, -1, -2) * (scale if scale is not None else 1 / math.sqrt(q.shape[-1]))
    L, S = s.shape[-2:]
    if causal:
        mask = np.tril(np.ones((L, S), dtype=bool))
    if mask is not None:
        s = np.where(mask, s, -np.inf) if mask.dtype == bool else s + mask
    m = s.max(-1, keepdims=True)
    e = np.exp(s - np.where(np.isfinite(m), m, 0))
    tot = e.sum(-1, keepdims=True)
    return (e / np.where(tot == 0, 1, tot)) @ v


def run_both(device, q, k, v, **kw):
    vs = [mk(a, device, rg=True) for a in (q, k, v)]
    ts = [torch.tensor(a, requires_grad=True) for a in (q, k, v)]
    vkw, tkw = dict(kw), dict(kw)
    m = kw.get("attn_mask")
    if m is not None:
        vkw["attn_mask"] = mk(m, device, vt.bool if m.dtype == bool else vt.float64)
        tkw["attn_mask"] = torch.tensor(m)
    out = vt.scaled_dot_product_attention(*vs, **vkw)
    ref = F.scaled_dot_product_attention(*ts, **tkw)
    g = np.random.randn(*ref.shape)
    out.backward(mk(g, device))
    ref.backward(torch.tensor(g))
    assert_close(out, ref.detach().numpy())
    for a, b in zip(vs, ts):
        assert_close(a.grad, b.grad.numpy())


def test_sdpa_grads_fd(device):
    r = np.random.randn
    check_op(vt.scaled_dot_product_attention, np_sdpa, [r(2, 3, 4), r(2, 5, 4), r(2, 5, 3)], device=device)
    check_op(lambda q, k, v: vt.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.7),
             lambda q, k, v: np_sdpa(q, k, v, causal=True, scale=0.7), [r(1, 4, 3), r(1, 4, 3), r(1, 4, 2)],
             device=device)
    fm = r(3, 5)
    check_op(lambda q, k, v, m: vt.scaled_dot_product_attention(q, k, v, attn_mask=m),
             lambda q, k, v, m: np_sdpa(q, k, v, mask=m), [r(2, 3, 4), r(2, 5, 4), r(2, 5, 3), fm], device=device)


def test_sdpa_matches_torch(device):
    r = np.random.randn
    q, k, v = r(2, 3, 5, 4), r(2, 3, 6, 4), r(2, 3, 6, 7)
    run_both(device, q, k, v)
    run_both(device, q, r(2, 3, 5, 4), r(2, 3, 5, 7), is_causal=True)
    run_both(device, q, k, v, is_causal=True)  # L != S: top-left aligned triangle, as PyTorch
    bm = np.random.rand(5, 6) > 0.4
    bm[2] = False  # a fully masked row gives zeros
    run_both(device, q, k, v, attn_mask=bm)
    run_both(device, q, k, v, attn_mask=r(3, 1, 6), scale=0.25)
    run_both(device, q, r(2, 1, 6, 4), r(2, 1, 6, 7), enable_gqa=True)
    run_both(device, r(2, 4, 5, 4), r(2, 2, 6, 4), r(2, 2, 6, 7), enable_gqa=True)


def test_sdpa_batch_broadcast_and_noncontiguous(device):
    q = mk(np.random.randn(2, 5, 3, 4), device).transpose(1, 2)  # (2, 3, 5, 4) strided view
    k, v = mk(np.random.randn(1, 3, 6, 4), device), mk(np.random.randn(1, 3, 6, 2), device)
    out = vt.scaled_dot_product_attention(q, k, v)
    qa, ka, va = (t.cpu().numpy() for t in (q, k, v))
    assert_close(out, np_sdpa(qa, ka, va))


@pytest.mark.parametrize("dtype", [vt.float16, vt.bfloat16, vt.float32])
def test_sdpa_dtypes(dtype, device):
    q, k, v = (mk(np.random.randn(2, 4, 8), device, dtype, rg=True) for _ in range(3))
    out = vt.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert out.dtype is dtype
    f = [t.detach().to(vt.float64).cpu().numpy() for t in (q, k, v)]
    assert_close(out, np_sdpa(*f, causal=True), dtype=dtype)
    out.sum().backward()
    assert q.grad.dtype is dtype and v.grad.dtype is dtype
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in f)
    F.scaled_dot_product_attention(tq, tk, tv, is_causal=True).sum().backward()
    assert_close(v.grad, tv.grad.numpy(), dtype=dtype)
    assert_close(q.grad, tq.grad.numpy(), dtype=dtype, atol=5e-2 if dtype.itemsize == 2 else None)


def test_sdpa_dropout(device):
    q, k = mk(np.random.randn(2, 8, 4), device, vt.float32), mk(np.random.randn(2, 8, 4), device, vt.float32)
    v = mk(np.eye(8)[None].repeat(2, 0), device, vt.float32, rg=True)  # output rows = dropped probabilities
    out = vt.scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    p = np_sdpa(*(t.detach().to(vt.float64).cpu().numpy() for t in (q, k, v)))
    o = out.detach().cpu().numpy()
    kept = o != 0
    assert 0.3 < kept.mean() < 0.7
    np.testing.assert_allclose(o[kept], 2 * p[kept], rtol=1e-5)
    out.backward(vt.ones_like(out))
    np.testing.assert_allclose(v.grad.cpu().numpy(), np.swapaxes(o, -1, -2).sum(-1, keepdims=True) * np.ones(8),
                               rtol=1e-5, atol=1e-6)
    assert not vt.scaled_dot_product_attention(q, k, v, dropout_p=1.0).detach().cpu().numpy().any()


def test_sdpa_errors(device):
    q, k, v = (mk(np.random.randn(2, 3, 4), device) for _ in range(3))
    with pytest.raises(vt.ShapeError, match="embedding dims differ"):
        vt.scaled_dot_product_attention(q, mk(np.random.randn(2, 3, 5), device), v)
    with pytest.raises(vt.ShapeError, match="sequence lengths differ"):
        vt.scaled_dot_product_attention(q, k, mk(np.random.randn(2, 4, 4), device))
    with pytest.raises(ValueError, match="either attn_mask or is_causal"):
        vt.scaled_dot_product_attention(q, k, v, attn_mask=mk(np.zeros((3, 3)), device), is_causal=True)
    with pytest.raises(vt.ShapeError, match="attn_mask shape"):
        vt.scaled_dot_product_attention(q, k, v, attn_mask=mk(np.zeros((4, 3)), device))
    with pytest.raises(vt.DTypeError, match="same dtype"):
        vt.scaled_dot_product_attention(q, k, mk(np.random.randn(2, 3, 4), device, vt.float32))
