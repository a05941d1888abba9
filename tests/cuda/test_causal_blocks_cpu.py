"""The row-block bookkeeping of vibetensor.cuda.causal_blocks (which rows, which keys, the causal
offset per block, dK/dV added over blocks with the full-width block first), checked on the CPU with
float64 numpy stand-ins for cuBLAS and the softmax kernels against one full masked product. The GPU
test (tests/cuda/test_fused_attention.py::test_attention_causal_row_blocks) runs the real kernels."""
import types

import numpy as np
import pytest

from vibetensor.cuda import causal_blocks as cb


def _softmax_fwd(x, scale=1.0, causal=False, offset=0, out_dtype=None):
    tq, n = x.shape[-2:]
    s = x * scale
    if causal:
        s = np.where(np.arange(n)[None, :] > np.arange(tq)[:, None] + offset, -np.inf, s)
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _softmax_bwd(y, dy, scale=1.0):
    return scale * y * (dy - (y * dy).sum(-1, keepdims=True))


def _matmul_into(a, b, c, accumulate=False):
    if accumulate:
        c += a @ b
    else:
        c[...] = a @ b


@pytest.fixture
def numpy_kernels(monkeypatch):
    monkeypatch.setattr(cb, "K", types.SimpleNamespace(softmax_fwd=_softmax_fwd, softmax_bwd=_softmax_bwd))
    monkeypatch.setattr(cb, "blas", types.SimpleNamespace(matmul=lambda a, b, out_dtype=None: a @ b,
                                                          matmul_into=_matmul_into))
    monkeypatch.setattr(cb, "MIN_SCORES", 0)


def test_row_blocks_choice(monkeypatch):
    f32 = np.zeros((2, 3, 256, 16), np.float32)
    assert cb.row_blocks(f32, f32, True) is None  # 2*3*256*256 scores: below MIN_SCORES
    monkeypatch.setattr(cb, "MIN_SCORES", 0)
    assert cb.row_blocks(f32, f32, True) == [(0, 64), (64, 128), (128, 192), (192, 256)]
    assert cb.row_blocks(f32, f32, False) is None                        # not causal
    assert cb.row_blocks(f32.astype(np.float16), f32, True) is None       # half types: flash kernels
    assert cb.row_blocks(f32, np.zeros((2, 3, 200, 16), np.float32), True) is None  # Tq != Tk
    assert cb.row_blocks(np.zeros((63, 8), np.float32), np.zeros((63, 8), np.float32), True) is None
    assert cb.row_blocks(np.zeros((97, 8), np.float32), np.zeros((97, 8), np.float32), True) == [
        (0, 32), (32, 64), (64, 97)]


@pytest.mark.parametrize("shape", [(2, 3, 97, 24), (1, 2, 256, 64), (130, 16)])
@pytest.mark.parametrize("needs", ["qkv", "q", "kv", "v"])
def test_blocks_equal_one_masked_product(shape, needs, numpy_kernels):
    rng = np.random.default_rng(len(shape) + shape[-2])
    q, k, v, g = (rng.standard_normal(shape) for _ in range(4))
    sc = 0.3
    blocks = cb.row_blocks(q.astype(np.float32), k, True)
    p = _softmax_fwd(q @ k.swapaxes(-1, -2), sc, True, 0)
    np.testing.assert_allclose(cb.forward(q, k, v, sc, blocks), p @ v, rtol=1e-12, atol=1e-12)
    ds = _softmax_bwd(p, g @ v.swapaxes(-1, -2), sc)
    ref = {"q": ds @ k, "k": ds.swapaxes(-1, -2) @ q, "v": p.swapaxes(-1, -2) @ g}
    got = cb.backward(g, q, k, v, sc, blocks, "q" in needs, "k" in needs, "v" in needs)
    for name, val in zip("qkv", got):
        if name in needs:
            np.testing.assert_allclose(val, ref[name], rtol=1e-10, atol=1e-12)
        else:
            assert val is None


def test_matmul_into_refuses_what_it_cannot_write():
    """blas.matmul_into checks shapes, dtypes and the output's layout before any GPU call."""
    from vibetensor.cuda import blas
    a, b = np.zeros((2, 3, 4), np.float32), np.zeros((2, 4, 5), np.float32)
    with pytest.raises(ValueError, match=r"shapes \(2, 3, 4\) @ \(2, 4, 5\) -> \(2, 3, 6\)"):
        blas.matmul_into(a, b, np.zeros((2, 3, 6), np.float32))
    with pytest.raises(ValueError, match="float64"):
        blas.matmul_into(a, b, np.zeros((2, 3, 5), np.float64))
    with pytest.raises(ValueError, match="unit column stride"):
        blas.matmul_into(a, b, np.zeros((2, 5, 3), np.float32).swapaxes(-1, -2))
