"""Fused CUDA attention (flash kernels, the materialized path, causal row blocks) against the
generic kernels and a float64 numpy reference, forward and backward. GPU only."""
import numpy as np
import pytest

import vibetensor as vt

from .fused_common import DTYPES, F, _compare, _fused

pytestmark = pytest.mark.gpu


@pytest.fixture(params=[True, False], ids=["flash", "materialized"])
def flash(request, monkeypatch):
    """Run an attention test through the flash kernels and through the materialized-scores path."""
    import dataclasses
    from vibetensor import _env
    monkeypatch.setattr(_env, "_flags", dataclasses.replace(_env.flags(), flash_attention="on" if request.param
                                                            else "off"))
    return request.param


ATT_TOL = {vt.float32: (2e-4, 2e-5), vt.float16: (2e-2, 2e-2), vt.bfloat16: (6e-2, 6e-2)}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [True, False])
def test_attention(dtype, causal, flash):
    q, k, v = (np.random.randn(2, 3, 33, 16) for _ in range(3))
    op = "sdpa_flash" if flash else "sdpa"
    _compare(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=causal), [q, k, v], dtype,
             *ATT_TOL[dtype], op)
    _compare(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=causal), [q, k, v], dtype,
             *ATT_TOL[dtype], op + "_backward")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("shapes", [
    ((1, 2, 130, 64), (1, 2, 130, 64)),   # several row blocks and key tiles, D = 64
    ((2, 1, 40, 32), (2, 1, 97, 32)),     # more keys than queries (causal: top-left aligned)
    ((3, 70, 32), (3, 21, 32)),           # 3-d, more queries than keys
    ((5, 16), (9, 16)),                   # 2-d
], ids=["blocks", "tq<tk", "3d", "2d"])
def test_attention_shapes(dtype, causal, shapes, flash):
    qs, ks = shapes
    q, k, v = np.random.randn(*qs), np.random.randn(*ks), np.random.randn(*ks)
    op = "sdpa_flash" if flash else "sdpa"
    _compare(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=causal), [q, k, v], dtype,
             *ATT_TOL[dtype], op + "_backward")


@pytest.mark.parametrize("dtype", [vt.float32, vt.bfloat16])
def test_attention_strided_heads(dtype, flash):
    """q, k, v as transposed views of (B, T, H, D) (how attention layers make them): the flash kernels
    read them through strides, no copies."""
    B, T, H, D = 2, 67, 4, 32
    x = np.random.randn(B, T, 3 * H * D)

    def fn(x):
        q, k, v = x.view(B, T, 3, H, D).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    _compare(fn, [x], dtype, *ATT_TOL[dtype], "sdpa_flash_backward" if flash else "sdpa_backward")


@pytest.fixture
def row_blocks(monkeypatch):
    """The materialized path with causal row blocks at every size (vibetensor.cuda.causal_blocks)."""
    import dataclasses
    from vibetensor import _env
    from vibetensor.cuda import causal_blocks
    monkeypatch.setattr(_env, "_flags", dataclasses.replace(_env.flags(), flash_attention="off"))
    monkeypatch.setattr(causal_blocks, "MIN_SCORES", 0)
    return causal_blocks


@pytest.mark.parametrize("shape", [(2, 3, 97, 24), (1, 2, 256, 64), (130, 16)], ids=["3-blocks", "4-blocks", "2d"])
def test_attention_causal_row_blocks(shape, row_blocks):
    """float32 causal attention in row blocks (keys [0, r1) per block; dK/dV added over the blocks)
    against float64, forward and backward; ragged blocks (97 = 32 + 32 + 33 rows)."""
    assert len(row_blocks.row_blocks(np.zeros(shape, np.float32), np.zeros(shape, np.float32), True)) == min(
        4, shape[-2] // 32)
    q, k, v = (np.random.randn(*shape) for _ in range(3))
    f = _fused()
    before = f.FUSED_CALLS["sdpa_causal_blocks"]
    _compare(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True), [q, k, v], vt.float32,
             *ATT_TOL[vt.float32], "sdpa_causal_blocks_backward")
    assert f.FUSED_CALLS["sdpa_causal_blocks"] > before


def test_attention_causal_row_blocks_partial_grads_and_strided_heads(row_blocks, monkeypatch):
    """Only some of q, k, v need a gradient; q, k, v are strided views of one qkv buffer: the same
    values as the unblocked materialized path."""
    B, T, H, D = 2, 130, 3, 32
    x = np.random.randn(B, T, 3 * H * D).astype(np.float32)

    def run(grad_of):
        xt = vt.tensor(x, device="cuda")
        q, k, v = (t.transpose(1, 2) for t in xt.view(B, T, 3, H, D).unbind(2))
        q, k, v = (t.detach().requires_grad_(n in grad_of) for t, n in zip((q, k, v), "qkv"))
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        (o * o).sum().backward()
        return [o.detach().cpu().numpy()] + [t.grad.cpu().numpy() for t, n in zip((q, k, v), "qkv") if n in grad_of]

    for grad_of in ("q", "kv", "qv"):
        blocked = run(grad_of)
        monkeypatch.setattr(row_blocks, "MIN_SCORES", 1 << 62)
        plain = run(grad_of)
        monkeypatch.setattr(row_blocks, "MIN_SCORES", 0)
        for a, b in zip(blocked, plain):
            np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("dtype", [vt.float16, vt.bfloat16])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("D", [16, 32, 64, 96, 128])
def test_flash_tensor_core_kernels(dtype, causal, D, monkeypatch):
    """float16/bfloat16 on sm_80+: the mma.sync kernels run forward and backward (several row blocks
    and key tiles, a ragged last block, more keys than queries) and match float64 within the dtype's
    tolerance."""
    from vibetensor.cuda import kernels as K
    q0 = vt.zeros(1, device="cuda", dtype=dtype)
    if not K.tensor_cores(q0._data.dtype):
        pytest.skip("tensor-core flash kernels need compute capability 8.0+")
    from vibetensor.cuda.kernels import flash as KF
    used = []
    orig = KF._flash_tc_fn
    monkeypatch.setattr(KF, "_flash_tc_fn", lambda name, *a: used.append(name) or orig(name, *a))
    import dataclasses
    from vibetensor import _env
    monkeypatch.setattr(_env, "_flags", dataclasses.replace(_env.flags(), flash_attention="auto"))
    q = np.random.randn(2, 3, 150, D)
    k, v = np.random.randn(2, 3, 203, D), np.random.randn(2, 3, 203, D)
    _compare(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=causal), [q, k, v], dtype,
             *ATT_TOL[dtype], "sdpa_flash_backward")
    # the dQ kernel computes the backward's delta = rowsum(dO * O) itself: no separate delta launch
    assert set(used) == {"flash_fwd_tc", "flash_bwd_dq_tc", "flash_bwd_dkdv_tc"}


@pytest.mark.parametrize("tiled", [True, False], ids=["tiled", "row-per-thread"])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("D", [16, 32, 64])
@pytest.mark.parametrize("tq,tk", [(150, 203), (64, 64), (200, 77), (1, 129)])
def test_flash_float32_kernels(tiled, causal, D, tq, tk, monkeypatch):
    """float32: the register-tiled kernels (src_flash_f32.cu) and the row-per-thread ones (src_flash.cu)
    each match float64 forward and backward: ragged 64-row tiles on both sides, exactly one tile, more
    queries than keys, a single query row. The spy shows which kernels ran."""
    from vibetensor.cuda.kernels import flash as KF
    monkeypatch.setattr(KF, "TILED_F32", tiled)
    used = []
    orig_t, orig_r = KF._flash_f32_fn, KF._flash_fn
    monkeypatch.setattr(KF, "_flash_f32_fn", lambda name, *a: used.append(name) or orig_t(name, *a))
    monkeypatch.setattr(KF, "_flash_fn", lambda name, *a: used.append(name) or orig_r(name, *a))
    import dataclasses
    from vibetensor import _env
    monkeypatch.setattr(_env, "_flags", dataclasses.replace(_env.flags(), flash_attention="on"))
    q = np.random.randn(2, 3, tq, D)
    k, v = np.random.randn(2, 3, tk, D), np.random.randn(2, 3, tk, D)
    _compare(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=causal), [q, k, v], vt.float32,
             *ATT_TOL[vt.float32], "sdpa_flash_backward")
    want = {"flash_fwd", "flash_bwd_dq", "flash_bwd_dkdv"}
    assert set(used) >= ({n + "_f32" for n in want} if tiled else want)
    if tiled:
        assert not set(used) & want


def test_flash_float32_tiled_rows_not_16_byte_aligned(monkeypatch):
    """q/k/v whose rows start off 16 bytes (a token stride of 17 floats, an offset of 1) reach the tiled
    kernels' float4 loads as aligned copies, and stay right forward and backward."""
    from vibetensor.cuda.kernels import flash as KF
    monkeypatch.setattr(KF, "TILED_F32", True)
    copies = []
    orig = KF._c
    monkeypatch.setattr(KF, "_c", lambda x: copies.append(x.shape) or orig(x))
    x = np.random.randn(2, 3, 70, 17)
    _compare(lambda x: F.scaled_dot_product_attention(x[..., 1:], x[..., 1:] * 0.5, x[..., 1:], is_causal=True),
             [x], vt.float32, *ATT_TOL[vt.float32], "sdpa_flash_backward")
    assert copies, "the unaligned rows were handed to the float4 loads as they were"


def test_flash_auto_takes_tiled_float32_at_every_size(monkeypatch):
    """VT_FLASH_ATTENTION=auto with the tiled float32 kernels: flash above FLASH_AUTO_MAX_SCORES and while
    a graph is captured too, and the replay equals the eager result."""
    import dataclasses
    from vibetensor import _env
    from vibetensor.cuda.kernels import flash as KF
    f = _fused()
    monkeypatch.setattr(_env, "_flags", dataclasses.replace(_env.flags(), flash_attention="auto"))
    monkeypatch.setattr(KF, "TILED_F32", True)
    monkeypatch.setattr(f, "FLASH_AUTO_MAX_SCORES", 16)
    q, k, v = (vt.randn(2, 3, 33, 16, device="cuda") for _ in range(3))
    before = dict(f.FUSED_CALLS)
    eager = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    g = vt.cuda.CUDAGraph()
    with vt.cuda.graph(g):
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    g.replay()
    assert f.FUSED_CALLS["sdpa_flash"] == before.get("sdpa_flash", 0) + 2
    assert f.FUSED_CALLS["sdpa"] == before.get("sdpa", 0)
    np.testing.assert_array_equal(out.cpu().numpy(), eager.cpu().numpy())


def test_flash_auto_takes_small_problems_only(monkeypatch):
    """VT_FLASH_ATTENTION=auto with the one-row-per-thread kernels (float32 with TILED_F32 off): flash up to
    FLASH_AUTO_MAX_SCORES score elements, cuBLAS above (FLASH_AUTO_MAX_SCORES_GRAPH while capturing a graph)."""
    import dataclasses
    from vibetensor import _env
    from vibetensor.cuda.kernels import flash as KF
    f = _fused()
    monkeypatch.setattr(KF, "TILED_F32", False)
    monkeypatch.setattr(_env, "_flags", dataclasses.replace(_env.flags(), flash_attention="auto"))
    monkeypatch.setattr(f, "FLASH_AUTO_MAX_SCORES", 2 * 3 * 33 * 33)
    q, k, v = (vt.randn(2, 3, 33, 16, device="cuda") for _ in range(3))
    before = dict(f.FUSED_CALLS)
    F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert f.FUSED_CALLS["sdpa_flash"] == before.get("sdpa_flash", 0) + 1
    q2 = vt.randn(2, 3, 34, 16, device="cuda")
    F.scaled_dot_product_attention(q2, k, v, is_causal=True)
    assert f.FUSED_CALLS["sdpa"] == before.get("sdpa", 0) + 1
    # while capturing a graph the (smaller) graph limit applies: same call, materialized path
    monkeypatch.setattr(f, "FLASH_AUTO_MAX_SCORES_GRAPH", 2 * 3 * 33 * 32)
    eager = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    g = vt.cuda.CUDAGraph()
    with vt.cuda.graph(g):
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    g.replay()
    assert f.FUSED_CALLS["sdpa"] == before.get("sdpa", 0) + 2
    np.testing.assert_allclose(out.cpu().numpy(), eager.cpu().numpy(), rtol=1e-4, atol=1e-5)


def test_flash_falls_back_for_other_head_dims():
    """Head dims without a compiled kernel (e.g. 48) take the materialized path and stay right."""
    f = _fused()
    before = f.FUSED_CALLS["sdpa_flash"]
    q = np.random.randn(1, 2, 9, 48)
    _compare(lambda q: F.scaled_dot_product_attention(q, q, q, is_causal=True), [q], vt.float32, 2e-4, 2e-5,
             "sdpa")
    assert f.FUSED_CALLS["sdpa_flash"] == before

@pytest.mark.parametrize("dtype", [vt.float16, vt.bfloat16])
def test_flash_tensor_core_rows_not_16_byte_aligned(dtype):
    """q/k/v whose rows do not start on 16 bytes (a slice one element into a wider buffer) take the
    kernels' in-place tile loads instead of cp.async / vector loads, with the same results bit for bit
    as contiguous copies, forward and backward."""
    from vibetensor.cuda import kernels as K
    if not K.tensor_cores(vt.zeros(1, device="cuda", dtype=dtype)._data.dtype):
        pytest.skip("tensor-core flash kernels need compute capability 8.0+")
    rng = np.random.default_rng(3)
    wide = [vt.tensor(rng.standard_normal((2, 3, 70, 17)), dtype=dtype, device="cuda") for _ in range(3)]
    g = vt.tensor(rng.standard_normal((2, 3, 70, 16)), dtype=dtype, device="cuda")

    def run(contiguous):
        qkv = [w[..., 1:].contiguous() if contiguous else w[..., 1:] for w in wide]
        qkv = [t.detach().requires_grad_() for t in qkv]
        out = F.scaled_dot_product_attention(*qkv, is_causal=True)
        out.backward(g)
        return [out] + [t.grad for t in qkv]
    f = _fused()
    before = f.FUSED_CALLS["sdpa_flash"]
    strided, dense = run(False), run(True)
    assert f.FUSED_CALLS["sdpa_flash"] == before + 2
    assert wide[0][..., 1:]._data.data.ptr % 16 != 0
    for a, b in zip(strided, dense):
        np.testing.assert_array_equal(a.detach().float().cpu().numpy(), b.detach().float().cpu().numpy())


@pytest.mark.parametrize("D", [64, 128])
@pytest.mark.parametrize("causal", [True, False])
def test_flash_tensor_core_variants_agree(D, causal, monkeypatch):
    """The kernel variants src_flash_tc.cu keeps behind macros (for side-by-side timing) compute the same
    thing: block order and the backward's in-place loads give the default kernels' results bit for bit;
    the forward's 64-key tile at D > 64 (one stage) rounds its online softmax differently, within the
    kernels' tolerance of a float64 reference."""
    from vibetensor.cuda import kernels as K
    from vibetensor.cuda.kernels import flash as FL
    dt = vt.zeros(1, device="cuda", dtype=vt.bfloat16)._data.dtype
    if not K.tensor_cores(dt):
        pytest.skip("tensor-core flash kernels need compute capability 8.0+")
    rng = np.random.default_rng(5)
    x = [rng.standard_normal((2, 3, 200, D)) for _ in range(4)]
    q, k, v, g = (vt.tensor(a, dtype=vt.bfloat16, device="cuda")._data for a in x)
    sc = D ** -0.5

    def run(opts):
        monkeypatch.setattr(FL, "TC_OPTIONS", opts)
        o, lse = K.flash_fwd(q, k, v, sc, causal)
        return [np.asarray(a.astype(np.float32).get()) for a in (o, lse, *K.flash_bwd(g, q, k, v, sc, causal, o, lse))]
    base = run(())
    for opts in (("-DVT_TC_HEAVY_FIRST=0",), ("-DVT_TC_BWD_STAGES=1",)):
        for a, b in zip(run(opts), base):
            np.testing.assert_array_equal(a, b)
    if D > 64:
        o64 = run(("-DVT_TC_FWD_TILE_BIG=64",))[0]
        qf, kf, vf = (np.asarray(vt.tensor(a, dtype=vt.bfloat16).float().numpy(), np.float64) for a in x[:3])
        s = qf @ kf.swapaxes(-1, -2) * sc
        if causal:
            s = np.where(np.tril(np.ones((200, 200), bool)), s, -np.inf)
        p = np.exp(s - s.max(-1, keepdims=True))
        ref = (p / p.sum(-1, keepdims=True)) @ vf
        for o in (base[0], o64):
            np.testing.assert_allclose(o, ref, rtol=0, atol=3e-2)


def test_flash_head_dim_128_float32_takes_the_materialized_path():
    """D = 128 has tensor-core kernels only: float32 goes to cuBLAS + softmax and stays right, bfloat16
    (on sm_80+) to the flash kernels, forward and backward."""
    from vibetensor.cuda import kernels as K
    f = _fused()
    before = dict(f.FUSED_CALLS)
    q = np.random.randn(1, 2, 40, 128)
    _compare(lambda q: F.scaled_dot_product_attention(q, q, q, is_causal=True), [q], vt.float32, 2e-4, 2e-5,
             "sdpa")
    assert f.FUSED_CALLS["sdpa_flash"] == before.get("sdpa_flash", 0)
    if K.tensor_cores(vt.zeros(1, device="cuda", dtype=vt.bfloat16)._data.dtype):
        _compare(lambda q: F.scaled_dot_product_attention(q, q, q, is_causal=True), [q], vt.bfloat16,
                 *ATT_TOL[vt.bfloat16], "sdpa_flash_backward")
        assert f.FUSED_CALLS["sdpa_flash"] > before.get("sdpa_flash", 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("Dh", [16, 128])
@pytest.mark.parametrize("fused_qkv", [True, False], ids=["qkv-thirds", "separate"])
def test_flash_outputs_mirror_the_input_layout(dtype, fused_qkv, Dh):
    """q/k/v viewed as heads of (B, T, H*D) rows: the output and dq/dk/dv are stored (B, T, H, D) like
    them (so transpose(1, 2).reshape(B, T, H*D) is a view), with the same values, bit for bit, as the
    kernels give for contiguous inputs. q/k/v that are the thirds of one (B, T, 3*H*D) projection get
    dq/dk/dv as the thirds of one new buffer of that layout (split's backward then needs no copy)."""
    import cupy as cp
    from vibetensor.cuda import kernels as K

    def bits(a):  # bitwise comparison, also for bfloat16
        return a.view(np.uint16 if a.itemsize == 2 else np.uint32)
    if Dh not in K.FLASH_DIMS and not K.tensor_cores(vt.zeros(1, device="cuda", dtype=dtype)._data.dtype):
        pytest.skip(f"head dim {Dh} has tensor-core flash kernels only (float16/bfloat16 on sm_80+)")
    B, T, H = 2, 37, 4
    if fused_qkv:
        qkv = vt.tensor(np.random.randn(B, T, 3 * H * Dh), dtype=dtype, device="cuda")._data
        q, k, v = (qkv[..., i * H * Dh:(i + 1) * H * Dh].reshape(B, T, H, Dh).transpose(0, 2, 1, 3)
                   for i in range(3))
    else:
        q, k, v = (vt.tensor(np.random.randn(B, T, H * Dh), dtype=dtype, device="cuda")._data
                   .reshape(B, T, H, Dh).transpose(0, 2, 1, 3) for _ in range(3))
    g = vt.tensor(np.random.randn(B, T, H, Dh), dtype=dtype, device="cuda")._data.transpose(0, 2, 1, 3)
    o = K.flash_fwd(q, k, v, 0.25, True)[0]
    assert o.transpose(0, 2, 1, 3).flags.c_contiguous and not o.flags.c_contiguous
    qc, kc, vc, gc = (cp.ascontiguousarray(a) for a in (q, k, v, g))
    oc = K.flash_fwd(qc, kc, vc, 0.25, True)[0]
    assert oc.flags.c_contiguous
    assert cp.array_equal(bits(o), bits(oc))
    grads, grads_c = K.flash_bwd(g, q, k, v, 0.25, True), K.flash_bwd(gc, qc, kc, vc, 0.25, True)
    for i, (a, c) in enumerate(zip(grads, grads_c)):
        assert c.flags.c_contiguous
        if fused_qkv:
            assert a.strides == q.strides and a.data.ptr == grads[0].data.ptr + i * H * Dh * a.itemsize
        else:
            assert a.transpose(0, 2, 1, 3).flags.c_contiguous
        assert cp.array_equal(bits(a), bits(c))


@pytest.mark.parametrize("dtype", [vt.float32, vt.bfloat16])
@pytest.mark.parametrize("leaf", [False, True], ids=["projected", "leaf"])
def test_split_backward_joins_flash_gradients_without_a_copy(dtype, leaf, monkeypatch):
    """The attention layer's pattern, qkv.split(d, -1) -> reshape -> transpose -> sdpa: the split's backward
    joins dq/dk/dv (written as thirds of one buffer) as a view instead of a cat, with the gradients of the
    same ops made to copy (q/k/v made contiguous). A leaf qkv gets its own copy as .grad."""
    from vibetensor.core.ops import shape_split
    B, T, H, Dh = 2, 33, 2, 32
    d = H * Dh
    x_np, w_np = np.random.randn(B, T, d), np.random.randn(3 * d, d) * 0.2
    joined = []
    orig = shape_split.join_adjacent
    monkeypatch.setattr(shape_split, "join_adjacent", lambda ts, dim: joined.append(orig(ts, dim)) or joined[-1])

    def grads(copy):
        x = vt.tensor(x_np, dtype=dtype, device="cuda", requires_grad=True)
        w = vt.tensor(w_np, dtype=dtype, device="cuda", requires_grad=True)
        qkv = x @ w.t()
        if leaf:
            qkv = qkv.detach().requires_grad_()
        q, k, v = qkv.split(d, dim=-1)
        q, k, v = (t.reshape(B, T, H, Dh).transpose(1, 2) for t in (q, k, v))
        if copy:
            q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        wts = vt.tensor(np.linspace(-1, 1, out.numel()).reshape(out.shape), dtype=vt.float32, device="cuda")
        (out.float() * wts).sum().backward()
        return qkv.grad if leaf else x.grad, None if leaf else w.grad
    got = grads(copy=False)
    assert joined and joined[-1] is not None  # the split's backward took the view
    n = len(joined)
    want = grads(copy=True)
    assert joined[n:] == [None]  # contiguous copies: separate buffers, cat as before
    for a, b in zip(got, want):  # the same kernels on the same values: equal up to GEMM algorithm choice
        if a is not None:
            tol = 1e-5 if dtype is vt.float32 else 1e-2
            np.testing.assert_allclose(a.float().cpu().numpy(), b.float().cpu().numpy(), rtol=tol, atol=tol)
    if leaf:
        assert got[0]._base is None and got[0]._data.flags.c_contiguous  # .grad is a copy, not the view


@pytest.mark.parametrize("dtype", DTYPES)
def test_flash_backward_reuses_the_forward_output_and_lse(dtype, monkeypatch):
    """Under autograd the fused attention forward keeps its row log-sum-exp and the node saves its output;
    the backward then skips the forward, with gradients bit for bit equal to the kernels' recomputing path
    (q/k/v as views of one qkv buffer, so the kept output has the mirrored layout)."""
    import cupy as cp
    import dataclasses
    from vibetensor import _env
    from vibetensor.cuda import kernels as K
    monkeypatch.setattr(_env, "_flags", dataclasses.replace(_env.flags(), flash_attention="on"))
    f = _fused()
    B, T, H, Dh = 2, 45, 3, 32
    qkv = vt.tensor(np.random.randn(B, T, 3 * H * Dh), dtype=dtype, device="cuda", requires_grad=True)
    q, k, v = (qkv[..., i * H * Dh:(i + 1) * H * Dh].reshape(B, T, H, Dh).transpose(1, 2) for i in range(3))
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    node = out.grad_fn
    assert node.ctx.kept is not None and node.ctx.kept.shape == (B * H, T)
    up = vt.tensor(np.random.randn(B, H, T, Dh), dtype=dtype, device="cuda")
    before = (f.FUSED_CALLS["sdpa_flash_backward"], f.FUSED_CALLS["sdpa_flash_backward_kept"])
    out.backward(up)
    assert (f.FUSED_CALLS["sdpa_flash_backward"], f.FUSED_CALLS["sdpa_flash_backward_kept"]) == (
        before[0] + 1, before[1] + 1)
    assert node.ctx.kept is None  # freed with the node's saved tensors
    qa, ka, va = (t.detach()._data for t in (q, k, v))
    want = K.flash_bwd(up._data, qa, ka, va, 1.0 / np.sqrt(Dh), True)  # runs the forward again
    got = qkv.grad._data.reshape(B, T, 3, H, Dh)
    for i, w in enumerate(want):  # equal values (the slices' gradients sum into qkv: -0.0 comes back +0.0)
        assert cp.array_equal(got[:, :, i].astype(cp.float32), w.transpose(0, 2, 1, 3).astype(cp.float32))
    with vt.no_grad():  # no node: nothing kept
        assert F.scaled_dot_product_attention(q, k, v, is_causal=True).grad_fn is None


def test_materialized_attention_saves_dense_copies_of_strided_qkv(monkeypatch):
    """The cuBLAS attention path copies q/k/v viewed from one qkv buffer (no single batch stride) once and
    saves those copies in the views' place, and does not save its output; values and gradients match a
    float64 reference."""
    import dataclasses
    from vibetensor import _env
    monkeypatch.setattr(_env, "_flags", dataclasses.replace(_env.flags(), flash_attention="off"))
    f = _fused()
    B, T, H, Dh = 2, 19, 3, 8
    rs = np.random.RandomState(5)
    base, up = rs.randn(B, T, 3 * H * Dh), rs.randn(B, H, T, Dh)
    qkv = vt.tensor(base, dtype=vt.float32, device="cuda", requires_grad=True)
    q, k, v = (qkv[..., i * H * Dh:(i + 1) * H * Dh].reshape(B, T, H, Dh).transpose(1, 2) for i in range(3))
    before = f.FUSED_CALLS["sdpa"]
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert f.FUSED_CALLS["sdpa"] == before + 1
    ctx = out.grad_fn.ctx
    assert ctx.out is None and all(t._data.flags.c_contiguous for t in ctx.saved[:3])
    out.backward(vt.tensor(up, dtype=vt.float32, device="cuda"))
    # float64 reference
    qr, kr, vr = (base[..., i * H * Dh:(i + 1) * H * Dh].reshape(B, T, H, Dh).transpose(0, 2, 1, 3) for i in range(3))
    sc = qr @ kr.transpose(0, 1, 3, 2) / np.sqrt(Dh)
    sc = np.where(np.tril(np.ones((T, T), bool)), sc, -np.inf)
    p = np.exp(sc - sc.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    np.testing.assert_allclose(out.detach().cpu().numpy(), p @ vr, rtol=1e-5, atol=1e-5)
    dv = p.transpose(0, 1, 3, 2) @ up
    dp = up @ vr.transpose(0, 1, 3, 2)
    ds = p * (dp - (dp * p).sum(-1, keepdims=True)) / np.sqrt(Dh)
    dq, dk = ds @ kr, ds.transpose(0, 1, 3, 2) @ qr
    want = np.concatenate([d.transpose(0, 2, 1, 3).reshape(B, T, H * Dh) for d in (dq, dk, dv)], axis=-1)
    np.testing.assert_allclose(qkv.grad.cpu().numpy(), want, rtol=1e-4, atol=1e-5)
