"""Fused CUDA kernels against the generic (unfused) kernels and a float64 numpy reference,
forward and backward. GPU only. Attention: test_fused_attention.py."""
import numpy as np
import pytest

import vibetensor as vt

from .fused_common import DTYPES, TOL, F, _compare, _fused, _rounded

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 7), (2, 5, 1000), (4, 2049)])
def test_softmax(dtype, shape):
    _compare(lambda x: F.softmax(x, dim=-1), [np.random.randn(*shape)], dtype, *TOL[dtype], "softmax")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [8, 127, 768, 3000])
def test_layer_norm(dtype, n):
    x = np.random.randn(6, n) * 3 + 1
    w, b = np.random.randn(n), np.random.randn(n)

    def fn(x, w, b):
        return F.layer_norm(x, (n,), w.float() if dtype is vt.float16 else w, b.float() if dtype is vt.float16 else b)
    if dtype is not vt.float32:
        _compare(lambda x: F.layer_norm(x, (n,)), [x], dtype, *TOL[dtype], "layer_norm")
    else:
        _compare(fn, [x, w, b], dtype, *TOL[dtype], "layer_norm")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [8, 768, 3000])  # warp-per-row kernels and block-per-row (3000)
def test_layer_norm_backward_reuses_the_forward_statistics(dtype, n):
    """Under autograd the fused forward keeps its row means and rstds for the backward, which then skips
    computing them: the gradients equal those of the backward that recomputes them from x."""
    rs = np.random.RandomState(2)
    x = vt.tensor(rs.randn(3, 5, n) * 2 + 1, dtype=dtype, device="cuda", requires_grad=True)
    w = vt.tensor(rs.randn(n), dtype=vt.float32, device="cuda", requires_grad=True)
    b = vt.tensor(rs.randn(n), dtype=vt.float32, device="cuda", requires_grad=True)
    y = F.layer_norm(x, (n,), w, b)
    assert y.grad_fn.ctx.kept is not None and tuple(y.grad_fn.ctx.kept.shape) == (2 * 15,)
    g = vt.tensor(rs.randn(3, 5, n), dtype=dtype, device="cuda")
    y.backward(g)
    with vt.no_grad():
        gx, gw, gb = vt.ops.vt.layer_norm_backward(g, x.detach(), (n,), w.detach(), True, 1e-5)  # recomputes
    for kept, fresh in ((x.grad, gx), (w.grad, gw), (b.grad, gb)):
        np.testing.assert_array_equal(kept.to(vt.float32).cpu().numpy(), fresh.to(vt.float32).cpu().numpy())
    xr = x.detach().to(vt.float64).cpu().numpy()  # the kept statistics are the rows' mean and 1/std
    y2 = F.layer_norm(x, (n,), w, b)  # (backward freed the first node's)
    st = y2.grad_fn.ctx.kept.get()
    np.testing.assert_allclose(st[:15], xr.reshape(15, n).mean(1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(st[15:], 1 / np.sqrt(xr.reshape(15, n).var(1) + 1e-5), rtol=1e-4)


def test_rms_norm():
    n = 257
    _compare(lambda x, w: F.rms_norm(x, (n,), w, eps=1e-6), [np.random.randn(5, n), np.random.randn(n)],
             vt.float32, 2e-4, 2e-5, "rms_norm")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("smooth", [0.0, 0.1])
@pytest.mark.parametrize("red", ["mean", "sum", "none"])
def test_cross_entropy(smooth, red, dtype):
    C = 1003
    x = np.random.randn(37, C) * 2
    tgt = np.random.randint(0, C, size=37)
    tgt[[3, 9]] = -100
    t = vt.tensor(tgt, device="cuda")
    kept = _fused().FUSED_CALLS["cross_entropy_backward_kept"]
    _compare(lambda x: F.cross_entropy(x, t, reduction=red, label_smoothing=smooth), [x], dtype,
             *TOL[dtype], "cross_entropy", exact_inputs=dtype is not vt.float32)
    # the backward reused the forward's row log-sum-exp and target count instead of a second pass
    assert _fused().FUSED_CALLS["cross_entropy_backward_kept"] == kept + 1


@pytest.mark.parametrize("red", ["mean", "sum", "none"])
def test_cross_entropy_backward_without_kept_stats(red):
    """The backward op called on its own (no forward stats) computes them again: same gradient."""
    x = vt.tensor(np.random.randn(9, 130), dtype=vt.float32, device="cuda", requires_grad=True)
    tgt = np.random.randint(0, 130, size=9)
    tgt[4] = -100
    t = vt.tensor(tgt, device="cuda")
    loss = F.cross_entropy(x, t, reduction=red, label_smoothing=0.05)
    g = vt.tensor(np.random.randn(*loss.shape), dtype=vt.float32, device="cuda")
    loss.backward(g)
    direct, _ = vt.ops.vt.cross_entropy_backward(g, x.detach(), t, None, -100, red, 0.05)
    np.testing.assert_allclose(direct.cpu().numpy(), x.grad.cpu().numpy(), rtol=1e-6, atol=1e-7)
    if red == "mean":  # and the mean divides by the rows whose target counts (8 of 9)
        s, _ = vt.ops.vt.cross_entropy_backward(g / 8, x.detach(), t, None, -100, "sum", 0.05)
        np.testing.assert_allclose(s.cpu().numpy(), x.grad.cpu().numpy(), rtol=1e-5, atol=1e-7)


def test_cross_entropy_flags_do_not_pile_up_without_a_sync():
    from vibetensor.core import backend
    x = vt.tensor(np.random.randn(4, 6), dtype=vt.float32, device="cuda")
    t = vt.tensor([0, 1, 2, 3], device="cuda")
    for _ in range(200):
        F.cross_entropy(x, t)
    assert len(backend._pending) <= 65


def test_deferred_checks_leave_in_batches_without_stalling_the_host():
    """64 unsynchronised checks go to the host by an asynchronous copy: the host does not wait for the
    device (busy in a spinning kernel here), and a bad flag in that batch is raised at the next sync."""
    import cupy as cp
    from vibetensor.core import backend
    spin = cp.RawKernel(r'''extern "C" __global__ void spin(long long cycles) {
        long long t0 = clock64(); while (clock64() - t0 < cycles) {} }''', "spin")
    for _ in range(backend._BATCH):  # one batch first: the pinned pool's first allocation may synchronize
        backend.defer_flag(cp.zeros((), dtype=cp.bool_), lambda: "never raised")
    backend.flush_checks()
    flags = [cp.zeros((), dtype=cp.bool_) for _ in range(backend._BATCH + 1)]
    flags[5] = cp.ones((), dtype=cp.bool_)
    cp.cuda.Device().synchronize()
    spin((1,), (1,), (np.int64(600_000_000),))  # ~0.3 s at the H100's clock
    busy = cp.cuda.Event()
    busy.record()
    for i, f in enumerate(flags):
        backend.defer_flag(f, lambda i=i: f"flag {i}")
    assert not busy.done  # the host went on while the batch's copy waits behind the kernel
    assert len(backend._inflight) == 1 and len(backend._pending) == 1
    with pytest.raises(IndexError, match="^flag 5$"):
        vt.cuda.synchronize()
    assert not backend._pending and not backend._inflight
    assert vt.ones(2, device="cuda").sum().item() == 2


def test_cross_entropy_bad_target_raised_after_fused_path():
    f = _fused()
    before = f.FUSED_CALLS["cross_entropy"]
    x = vt.tensor(np.random.randn(5, 6), dtype=vt.float32, device="cuda")
    loss = F.cross_entropy(x, vt.tensor([0, -100, 6, 2, 7], device="cuda"), ignore_index=-100)
    assert f.FUSED_CALLS["cross_entropy"] == before + 1
    with pytest.raises(IndexError, match="target 6 is out of bounds for 6 classes"):
        loss.item()
    # an ignored row whose ignore_index lies outside [0, C) is not an error; the process goes on
    ok = F.cross_entropy(x, vt.tensor([0, 9, 1, 2, 3], device="cuda"), ignore_index=9)
    ref = -np.log(np.exp(x.cpu().numpy()) / np.exp(x.cpu().numpy()).sum(1, keepdims=True))[[0, 2, 3, 4], [0, 1, 2, 3]]
    np.testing.assert_allclose(ok.item(), ref.mean(), rtol=1e-5)



@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("approx", ["none", "tanh"])
def test_gelu(approx, dtype):
    rtol, atol = (2e-5, 2e-6) if dtype is vt.float32 else TOL[dtype]
    _compare(lambda x: F.gelu(x, approximate=approx), [np.random.randn(4, 1001) * 3], dtype, rtol, atol, "gelu")
    # a non-contiguous input takes the same kernel (made contiguous first)
    _compare(lambda x: F.gelu(x.transpose(0, 1), approximate=approx), [np.random.randn(6, 33)], dtype, rtol, atol,
             "gelu_backward")
    # a contiguous view that is not 16-byte aligned takes the one-element-per-thread kernels
    _compare(lambda x: F.gelu(x[1:], approximate=approx), [np.random.randn(1001) * 3], dtype, rtol, atol, "gelu")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,n_out,path", [((7, 33), 19, ""), ((2, 5, 64), 19, ""), ((1, 3), 19, ""),
                                              ((3, 10, 64), 48, "_epilogue"), ((130, 256), 96, "_epilogue")])
def test_linear_bias(dtype, shape, n_out, path):
    """Forward: one cuBLASLt GEMM with the bias in its epilogue when operands are 16-byte aligned, else
    GEMM + in-place bias kernel. Backward: the bias grad from the weight-grad GEMM's epilogue, else a
    column-sum kernel."""
    x, w, b = np.random.randn(*shape), np.random.randn(n_out, shape[-1]) * 0.3, np.random.randn(n_out)
    rtol, atol = (2e-4, 2e-4) if dtype is vt.float32 else TOL[dtype]
    _compare(lambda x, w, b: F.linear(x, w, b), [x, w, b], dtype, rtol, atol, "linear" + path, exact_inputs=True)
    _compare(lambda x, w, b: F.linear(x, w, b), [x, w, b], dtype, rtol, atol, "linear_backward" + path,
             exact_inputs=True)


def test_cublaslt_matmul_plans():
    """2-d matmuls through cached cuBLASLt plans (every layout: N/T on each side, odd and aligned sizes)
    equal float64 numpy, and equal the cublasGemmEx path; a plan is made once per shape."""
    import cupy as cp
    from vibetensor.cuda import blas, blaslt
    rng = np.random.default_rng(0)
    for m, k, n in [(64, 32, 16), (33, 17, 9), (128, 256, 64), (1, 8, 8)]:
        for ta in (False, True):
            for tb in (False, True):
                A = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
                B = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
                a, b = cp.asarray(A), cp.asarray(B)
                a, b = (a.T if ta else a), (b.T if tb else b)
                ref = (A.T if ta else A).astype(np.float64) @ (B.T if tb else B).astype(np.float64)
                plans = len(blaslt._plans)
                got = blas.matmul(a, b)
                np.testing.assert_allclose(cp.asnumpy(got), ref, rtol=2e-5, atol=2e-5)
                blaslt.enabled = False
                try:
                    plain = blas.matmul(a, b)
                finally:
                    blaslt.enabled = True
                np.testing.assert_allclose(cp.asnumpy(got), cp.asnumpy(plain), rtol=2e-5, atol=2e-5)
                blas.matmul(a, b)
                assert len(blaslt._plans) <= plans + 1  # the second call of a shape reuses its plan
    assert any(p is not None for p in blaslt._plans.values()), "cuBLASLt found no algorithm for any shape"


def test_col_sum_large_rows():
    """Bias grads over many rows (the partial sums split rows over 128 groups) against numpy float64."""
    from vibetensor.cuda import kernels as K
    import cupy as cp
    a = np.random.randn(10007, 37).astype(np.float32)
    np.testing.assert_allclose(cp.asnumpy(K.col_sum(cp.asarray(a))), a.astype(np.float64).sum(0), rtol=1e-4,
                               atol=1e-3)


@pytest.mark.parametrize("dtype,tol", [(vt.float32, 1e-4), (vt.float16, 2e-2), (vt.bfloat16, 5e-2),
                                       (vt.float64, 1e-10)])
def test_blas_matmul_layouts(dtype, tol):
    from vibetensor.cuda import blas
    import cupy as cp
    rng = np.random.RandomState(0)
    cases = [((5, 7), (7, 3)), ((7,), (7, 3)), ((5, 7), (7,)), ((2, 4, 5, 7), (7, 3)), ((4, 1, 5, 7), (3, 7, 2)),
             ((1, 7), (7, 1)), ((3, 0, 4), (3, 4, 2))]
    for sa, sb in cases:
        a, b = rng.randn(*sa), rng.randn(*sb)
        ca = cp.asarray(a).astype(dtype.np)
        cb = cp.asarray(b).astype(dtype.np)
        got = blas.matmul(ca, cb).astype(cp.float64).get()
        ref = np.matmul(ca.astype(cp.float64).get(), cb.astype(cp.float64).get())
        np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * 10, err_msg=f"{sa} @ {sb}")
        # transposed views go in without copies
        if len(sa) >= 2 and len(sb) >= 2:
            at = cp.ascontiguousarray(ca.swapaxes(-1, -2)).swapaxes(-1, -2)
            bt = cp.ascontiguousarray(cb.swapaxes(-1, -2)).swapaxes(-1, -2)
            got = blas.matmul(at, bt).astype(cp.float64).get()
            np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * 10, err_msg=f"T {sa} @ {sb}")


def test_blas_in_graph_capture():
    x = vt.randn(64, 64, device="cuda")
    w = vt.randn(64, 64, device="cuda")
    g = vt.cuda.CUDAGraph()
    with vt.cuda.graph(g):
        y = F.gelu(x @ w)
    new = vt.randn(64, 64, device="cuda")
    x.copy_(new)
    g.replay()
    ref = F.gelu(new @ w)
    np.testing.assert_allclose(y.cpu().numpy(), ref.cpu().numpy(), rtol=1e-5, atol=1e-5)


def _round_to(x, dtype):
    """float64 x rounded once to dtype (the kernels compute in float32 and round the result once)."""
    return vt.tensor(np.asarray(x, np.float32), dtype=dtype).to(vt.float64).numpy()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 7, 1024 * 33, 4099])
def test_vectorised_add_sub_mul_every_size(dtype, n, monkeypatch):
    """Same-shape add/sub/mul take the one-launch kernel at every size (the n % 4 tail included; by default
    small same-dtype arrays are left to CuPy) and match a float64 reference rounded to the dtype."""
    from vibetensor.cuda import kernels
    monkeypatch.setattr(kernels, "BINARY_MIN", {d: 0 for d in kernels.BINARY_MIN})
    f = _fused()
    rs = np.random.RandomState(n)
    x, y = rs.randn(n), rs.randn(n)
    a, b = vt.tensor(x, dtype=dtype, device="cuda"), vt.tensor(y, dtype=dtype, device="cuda")
    xr, yr = _rounded(x, dtype), _rounded(y, dtype)
    before = {k: f.FUSED_CALLS[k] for k in ("add", "sub", "mul")}
    for got, ref in ((a + b, xr + yr), (a - b, xr - yr), (a * b, xr * yr),
                     (vt.add(a, b, alpha=2.5), xr + 2.5 * yr), (vt.sub(a, b, alpha=0.5), xr - 0.5 * yr)):
        assert got.dtype == dtype and got.shape == (n,)
        tol = {vt.float32: 1e-6, vt.float16: 1e-3, vt.bfloat16: 8e-3}[dtype]
        np.testing.assert_allclose(got.to(vt.float64).cpu().numpy(), _round_to(ref, dtype), rtol=tol, atol=tol)
    assert (f.FUSED_CALLS["add"] - before["add"], f.FUSED_CALLS["sub"] - before["sub"],
            f.FUSED_CALLS["mul"] - before["mul"]) == (2, 2, 1)
    if dtype is not vt.float32:  # exactly one rounding of the float32 result, as PyTorch's opmath
        np.testing.assert_array_equal((a + b).to(vt.float64).cpu().numpy(), _round_to(xr + yr, dtype))


@pytest.mark.parametrize("half", [vt.float16, vt.bfloat16])
def test_mixed_float32_and_half_add_is_one_kernel_with_grads(half):
    """float32 + float16/bfloat16 (either order) -> float32 by one kernel, no cast launch, with the dtype and
    value of the general path; gradients come back in each input's dtype."""
    f = _fused()
    rs = np.random.RandomState(0)
    x, y, up = rs.randn(6, 35), rs.randn(6, 35), rs.randn(6, 35)
    a = vt.tensor(x, dtype=vt.float32, device="cuda", requires_grad=True)
    b = vt.tensor(y, dtype=half, device="cuda", requires_grad=True)
    yr = _rounded(y, half)
    before = f.FUSED_CALLS["add"], f.FUSED_CALLS["mul"], f.FUSED_CALLS["sub"]
    s, r, p, d = a + b, b + a, a * b, b - a
    assert f.FUSED_CALLS["add"] - before[0] == 2 and f.FUSED_CALLS["mul"] - before[1] == 1
    assert f.FUSED_CALLS["sub"] - before[2] == 1
    xr = _rounded(x, vt.float32)
    for got, ref in ((s, xr + yr), (r, yr + xr), (p, xr * yr), (d, yr - xr)):
        assert got.dtype == vt.float32
        np.testing.assert_allclose(got.detach().cpu().numpy(), ref, rtol=1e-6, atol=1e-6)
    (s * vt.tensor(up, device="cuda")).sum().backward()
    assert a.grad.dtype == vt.float32 and b.grad.dtype == half
    np.testing.assert_allclose(a.grad.cpu().numpy(), up, rtol=1e-6)
    np.testing.assert_allclose(b.grad.to(vt.float64).cpu().numpy(), _rounded(up, half), rtol=1e-7)


def test_binary_fallbacks_stay_right():
    """Broadcasting, transposed views, misaligned views and float64 take the generic path, with the right
    values."""
    f = _fused()
    a = vt.randn(1024, 33, device="cuda")
    b = vt.randn(1024, 33, device="cuda")
    before = f.FUSED_CALLS["add"]
    c = vt.randn(33, device="cuda")
    np.testing.assert_allclose((a + c).cpu().numpy(), a.cpu().numpy() + c.cpu().numpy(), rtol=1e-6)
    t = a.t()
    np.testing.assert_allclose((t + t).cpu().numpy(), 2 * t.cpu().numpy(), rtol=1e-6)
    flat = a.reshape(-1)
    u, v = flat[1:1001], flat[5:1005]  # contiguous but 4 bytes past a 16-byte boundary
    np.testing.assert_allclose((u + v).cpu().numpy(), flat.cpu().numpy()[1:1001] + flat.cpu().numpy()[5:1005],
                               rtol=1e-6)
    d = vt.randn(64, device="cuda", dtype=vt.float64)
    np.testing.assert_array_equal((d + d).cpu().numpy(), 2 * d.cpu().numpy())
    half_c = vt.randn(33, device="cuda").to(vt.bfloat16)  # mixed and broadcast: the cast path
    np.testing.assert_allclose((a + half_c).cpu().numpy(), a.cpu().numpy() + half_c.float().cpu().numpy(), rtol=1e-6)
    np.testing.assert_allclose((a + b).cpu().numpy(), a.cpu().numpy() + b.cpu().numpy(), rtol=1e-6)
    assert f.FUSED_CALLS["add"] == before  # same dtype, below BINARY_MIN: CuPy's launch
    big = vt.randn(1 << 20, device="cuda")
    np.testing.assert_allclose((big + big).cpu().numpy(), 2 * big.cpu().numpy(), rtol=1e-6)
    assert f.FUSED_CALLS["add"] == before + 1


@pytest.mark.parametrize("dst", [vt.bfloat16, vt.float16])
def test_cast_many_is_one_launch_bit_equal_to_separate_casts(dst):
    """Up to three float32 arrays cast to a half type by one kernel (an autocast linear's input, weight and
    bias), bit for bit as the one-array cast, for odd sizes (each array's tail) and empty arrays; a
    strided array sends the whole call to one cast each."""
    import cupy as cp
    from vibetensor.cuda import kernels as K
    rs = np.random.RandomState(7)
    for sizes in [(5, 3), (1027, 4096 + 3, 33), (0, 8, 1), (64, 64, 64)]:
        arrs = [cp.asarray(rs.randn(n).astype(np.float32) * 300) for n in sizes]
        got = K.cast_many(arrs, dst.np)
        for a, g in zip(arrs, got):
            assert g.dtype == dst.np and g.shape == a.shape and g.flags.c_contiguous
            assert cp.array_equal(g.view(np.uint16), K.cast(a, dst.np).view(np.uint16))
        # the copies are 256-byte aligned slices of one allocation, back to back
        ptrs = [g.data.ptr for g in got]
        assert [q - ptrs[0] for q in ptrs] == list(np.cumsum([0] + [-(-2 * n // 256) * 256 for n in sizes[:-1]]))
        assert len({id(g.data.mem) for g in got}) == 1
    m = cp.asarray(rs.randn(6, 8).astype(np.float32))
    got = K.cast_many([m.T, m], dst.np)
    assert cp.array_equal(got[0].view(np.uint16), m.T.astype(dst.np).view(np.uint16))


@pytest.mark.parametrize("src,dst", [(vt.float32, vt.bfloat16), (vt.float32, vt.float16), (vt.bfloat16, vt.float32),
                                     (vt.float16, vt.float32)])
@pytest.mark.parametrize("n", [1, 3, 4, 1001, 65536 + 7])
def test_vectorised_cast_matches_numpy_rounding(src, dst, n):
    """The four-per-thread cast kernel rounds as numpy/ml_dtypes do (to nearest even), bit for bit, for
    odd sizes (the tail), infinities and values past the half range; unaligned or strided inputs take
    CuPy's astype with the same result."""
    import cupy as cp
    from vibetensor.cuda import kernels as K
    rng = np.random.default_rng(n)
    x = (rng.standard_normal(n) * rng.choice([1e-3, 1.0, 300.0, 1e5], size=n)).astype(np.float32)
    x[: min(n, 2)] = [np.inf, -np.inf][: min(n, 2)]
    xs = x.astype(src.np)
    want = xs.astype(dst.np)
    got = K.cast(cp.asarray(xs), dst.np)
    assert got.dtype == dst.np and got.shape == (n,)
    np.testing.assert_array_equal(cp.asnumpy(got).view(np.uint8), want.view(np.uint8))
    if n > 2:  # an unaligned view and a strided view: the fallback path, same values
        for view in (cp.asarray(xs)[1:], cp.asarray(xs)[::2]):
            ref = cp.asnumpy(view).astype(dst.np)
            np.testing.assert_array_equal(cp.asnumpy(K.cast(view, dst.np)).view(np.uint8), ref.view(np.uint8))


def test_autocast_casts_use_the_cast_kernel_and_flow_gradients():
    """Autocast's linear (one op casting inside, no cast nodes) and its other casts (outside the
    dispatcher) give the values and gradients of explicit casts: the float32 gradients come straight from
    the GEMMs' float32 accumulators, so they differ from explicit casts' (rounded to bfloat16, then
    widened) by at most that rounding."""
    w = vt.tensor(np.random.randn(48, 32), dtype=vt.float32, device="cuda", requires_grad=True)
    b = vt.tensor(np.random.randn(48), dtype=vt.float32, device="cuda", requires_grad=True)
    x = vt.tensor(np.random.randn(5, 32), dtype=vt.float32, device="cuda", requires_grad=True)
    for bias in (None, b):
        with vt.autocast("cuda", dtype=vt.bfloat16):
            y = F.linear(x, w, bias)
            s = F.softmax(y, dim=-1)  # a float32 op: its input is cast outside the dispatcher
        assert y.dtype is vt.bfloat16 and s.dtype is vt.float32
        assert y.grad_fn.name() == "Linear_autocastBackward"
        (y.float().sum() + s[:, 0].sum()).backward()
        got = [t.grad for t in (x, w, bias) if t is not None]
        assert all(gr.dtype is vt.float32 for gr in got)
        got = [gr.cpu().numpy() for gr in got]
        x.grad = w.grad = b.grad = None
        y = F.linear(x.to(vt.bfloat16), w.to(vt.bfloat16), None if bias is None else bias.to(vt.bfloat16))
        (y.float().sum() + F.softmax(y.float(), dim=-1)[:, 0].sum()).backward()
        want = [t.grad.cpu().numpy() for t in (x, w, bias) if t is not None]
        for gg, ww in zip(got, want):
            np.testing.assert_allclose(gg, ww, rtol=2 ** -8, atol=1e-6)
        assert not np.array_equal(got[1], want[1])  # the weight gradient was not rounded to bfloat16 on the way
        x.grad = w.grad = b.grad = None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("id_dtype", [vt.int64, vt.int32])
@pytest.mark.parametrize("dim", [16, 7, 1])  # 16-byte rows, odd widths (narrower copy units), one column
def test_embedding_fused_forward_and_backward(dtype, id_dtype, dim):
    """One gather launch forward, one scatter-add launch backward; against numpy in float64 with repeated
    ids, a padding row, a non-contiguous id tensor and ids of several dimensions."""
    f = _fused()
    rs = np.random.RandomState(3)
    V = 11
    w = rs.randn(V, dim)
    ids_full = rs.randint(0, V, (6, 10))
    ids_np = ids_full[:, ::2]  # non-contiguous view
    before = (f.FUSED_CALLS["embedding"], f.FUSED_CALLS["embedding_backward"])
    vw = vt.tensor(w, dtype=dtype, device="cuda", requires_grad=True)
    ids = vt.tensor(ids_full, dtype=id_dtype, device="cuda")[:, ::2]
    out = F.embedding(ids, vw, padding_idx=4)
    g = rs.randn(*ids_np.shape, dim)
    out.backward(vt.tensor(g, dtype=dtype, device="cuda"))
    assert (f.FUSED_CALLS["embedding"], f.FUSED_CALLS["embedding_backward"]) == (before[0] + 1, before[1] + 1)
    wr = vt.tensor(w, dtype=dtype).to(vt.float64).numpy()  # the table as stored: the gather is exact
    np.testing.assert_array_equal(out.detach().to(vt.float64).cpu().numpy(), wr[ids_np])
    gr = vt.tensor(g, dtype=dtype).to(vt.float64).numpy()
    ref = np.zeros((V, dim))
    np.add.at(ref, ids_np.reshape(-1), gr.reshape(-1, dim))
    ref[4] = 0
    rtol, atol = (1e-6, 1e-6) if dtype is vt.float32 else TOL[dtype]
    np.testing.assert_allclose(vw.grad.to(vt.float64).cpu().numpy(), ref, rtol=rtol, atol=atol)
    assert vw.grad.dtype is dtype


def test_embedding_fused_bad_index_raised_at_the_next_sync():
    f = _fused()
    w = vt.tensor(np.random.randn(5, 8), dtype=vt.float32, device="cuda")
    before = f.FUSED_CALLS["embedding"]
    out = F.embedding(vt.tensor([[1, 5], [-1, 2]], device="cuda"), w)
    assert f.FUSED_CALLS["embedding"] == before + 1
    with pytest.raises(IndexError, match=r"index (5|-1) is out of range for a weight with 5 rows \(valid 0..4\)"):
        out.sum().item()
    ok = F.embedding(vt.tensor([4, 0], device="cuda"), w)  # the process goes on; nothing stays pending
    np.testing.assert_array_equal(ok.cpu().numpy(), w.cpu().numpy()[[4, 0]])
    with pytest.raises(ValueError, match=r"padding_idx 7 must be within num_embeddings \(5\)"):
        F.embedding(vt.tensor([0], device="cuda"), w, padding_idx=7)
