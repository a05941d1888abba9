"""CUDA against CPU for the linalg / nn ops, forward and backward, float32 and float16 (cuBLAS GEMMs,
the CUDA scatter and pooling paths). The device-parametrised tests also run every op on CUDA."""
import numpy as np
import pytest

import vibetensor as vt

pytestmark = pytest.mark.gpu

R = np.random.randn
CASES = {
    "matmul": (lambda a, b: vt.matmul(a, b), [R(2, 1, 5, 8), R(3, 8, 4)]),
    "linear": (lambda x, w, b: vt.linear(x, w, b), [R(4, 6, 8), R(5, 8), R(5)]),
    "softmax": (lambda x: vt.softmax(x, -1), [R(4, 33)]),
    "log_softmax": (lambda x: vt.log_softmax(x, 0), [R(7, 5)]),
    "layer_norm": (lambda x, w, b: vt.layer_norm(x, (16,), w, b), [R(3, 5, 16), R(16), R(16)]),
    "rms_norm": (lambda x, w: vt.rms_norm(x, (16,), w), [R(3, 5, 16), R(16)]),
    "sdpa": (lambda q, k, v: vt.scaled_dot_product_attention(q, k, v, is_causal=True), [R(2, 3, 6, 8)] * 3),
    "conv2d": (lambda x, w, b: vt.conv2d(x, w, b, stride=2, padding=1, groups=2), [R(2, 4, 9, 8), R(6, 2, 3, 3),
                                                                                    R(6)]),
    "max_pool2d": (lambda x: vt.max_pool2d(x, 3, 2, 1), [R(2, 3, 9, 8)]),
    "avg_pool2d": (lambda x: vt.avg_pool2d(x, 3, 2, 1, count_include_pad=False), [R(2, 3, 9, 8)]),
    "mse_loss": (lambda a, b: vt.mse_loss(a, b), [R(4, 5), R(4, 5)]),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("dtype", [vt.float32, vt.float16])
def test_cuda_matches_cpu(name, dtype):
    fn, arrays = CASES[name]
    tol = dict(rtol=1e-4, atol=1e-4) if dtype is vt.float32 else dict(rtol=2e-2, atol=2e-2)
    results = []
    for dev in ("cpu", "cuda"):
        ts = [vt.tensor(a, dtype=dtype, device=dev, requires_grad=True) for a in arrays]
        out = fn(*ts)
        g = vt.tensor(np.random.RandomState(1).randn(*out.shape), dtype=dtype, device=dev)
        out.backward(g)
        results.append([out.detach().to(vt.float64).cpu().numpy()] +
                       [t.grad.to(vt.float64).cpu().numpy() for t in ts])
    for c, d in zip(*results):
        np.testing.assert_allclose(d, c, **tol)


def test_cuda_cross_entropy_and_embedding():
    x, t, w = R(6, 7, 3), np.random.randint(0, 7, (6, 3)), R(10, 4)
    t[0, 0] = -100
    ids = np.random.randint(0, 10, (5, 6))
    res = []
    for dev in ("cpu", "cuda"):
        vx = vt.tensor(x, dtype=vt.float32, device=dev, requires_grad=True)
        vw = vt.tensor(w, dtype=vt.float32, device=dev, requires_grad=True)
        loss = vt.cross_entropy(vx, vt.tensor(t, device=dev), label_smoothing=0.1)
        loss = loss + vt.embedding(vt.tensor(ids, device=dev), vw, padding_idx=3).sum()
        loss.backward()
        res.append([loss.item(), vx.grad.cpu().numpy(), vw.grad.cpu().numpy()])
    np.testing.assert_allclose(res[1][0], res[0][0], rtol=1e-5)
    np.testing.assert_allclose(res[1][1], res[0][1], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(res[1][2], res[0][2], rtol=1e-5, atol=1e-5)
    # CUDA checks are deferred to the next host sync (no stall per op), as PyTorch's device asserts
    bad = vt.cross_entropy(vt.tensor(x, dtype=vt.float32, device="cuda"), vt.tensor(np.full((6, 3), 7), device="cuda"))
    with pytest.raises(IndexError, match="target 7 is out of bounds for 7 classes"):
        bad.item()
    with pytest.raises(IndexError, match="index 10 is out of range for a weight with 10 rows"):
        vt.embedding(vt.tensor([[10]], device="cuda"), vt.tensor(w, dtype=vt.float32, device="cuda"))
        vt.cuda.synchronize()
    assert vt.ones(2, device="cuda").sum().item() == 2  # nothing left pending
