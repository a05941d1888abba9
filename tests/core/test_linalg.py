"""matmul family and linear: numpy float64 reference, finite differences, PyTorch, dtypes, errors."""
import numpy as np
import pytest

import vibetensor as vt
from tests.opcheck import assert_close, check_op, noncontig, mk

torch = pytest.importorskip("torch")

LOWP = [vt.float16, vt.bfloat16, vt.float32, vt.float64]




MATMUL_SHAPES = [
    ((4,), (4,)), ((3, 4), (4,)), ((4,), (4, 5)), ((3, 4), (4, 5)), ((2, 3, 4), (4,)), ((4,), (2, 4, 5)),
    ((2, 3, 4), (4, 5)), ((3, 4), (2, 4, 5)), ((2, 1, 3, 4), (5, 4, 2)), ((1, 3, 4), (2, 4, 2)),
]


@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES)
def test_matmul_shapes_and_grads(sa, sb, device):
    check_op(vt.matmul, np.matmul, [np.random.randn(*sa), np.random.randn(*sb)], device=device)


def test_matmul_batch_broadcast_matches_torch(device):
    a, b = np.random.randn(2, 1, 3, 4), np.random.randn(5, 4, 6)
    ta, tb = mk(a, device, rg=True), mk(b, device, rg=True)
    out = ta @ tb
    ra, rb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    ref = ra @ rb
    g = np.random.randn(*ref.shape)
    out.backward(mk(g, device))
    ref.backward(torch.tensor(g))
    assert_close(out, ref.detach().numpy())
    assert_close(ta.grad, ra.grad.numpy())
    assert_close(tb.grad, rb.grad.numpy())


def test_matmul_noncontiguous(device):
    a, b = np.random.randn(3, 4), np.random.randn(4, 5)
    check_op(vt.matmul, np.matmul, [a, b], device=device, make=lambda x: noncontig(x, device))
    t = mk(np.random.randn(2, 6, 4), device)[:, ::2]  # strided batch view
    w = mk(np.random.randn(4, 3), device)
    assert_close(vt.matmul(t, w), np.matmul(t.cpu().numpy(), w.cpu().numpy()))


@pytest.mark.parametrize("dtype", LOWP)
def test_matmul_dtypes(dtype, device):
    a, b = np.random.randn(2, 5, 8), np.random.randn(8, 3)
    ta, tb = mk(a, device, dtype, rg=True), mk(b, device, dtype, rg=True)
    out = vt.matmul(ta, tb)
    assert out.dtype is dtype
    a_, b_ = ta.detach().to(vt.float64).cpu().numpy(), tb.detach().to(vt.float64).cpu().numpy()
    assert_close(out, a_ @ b_, dtype=dtype)
    out.backward(vt.ones_like(out))
    assert ta.grad.dtype is dtype and tb.grad.dtype is dtype
    assert_close(tb.grad, np.einsum("bmk,bmn->kn", a_, np.ones((2, 5, 3))), dtype=dtype)


@pytest.mark.parametrize("dt", [vt.int64, vt.int32, vt.int8, vt.uint8])
def test_matmul_integers(dt, device):
    a, b = np.random.randint(0, 4, (3, 4)), np.random.randint(0, 4, (4, 2))
    out = vt.matmul(vt.tensor(a, dtype=dt, device=device), vt.tensor(b, dtype=dt, device=device))
    assert out.dtype is dt
    np.testing.assert_array_equal(out.cpu().numpy(), (a @ b).astype(dt.np))


def test_matmul_empty(device):
    a = mk(np.zeros((0, 3, 4)), device, rg=True)
    b = mk(np.random.randn(4, 5), device, rg=True)
    out = a @ b
    assert tuple(out.shape) == (0, 3, 5)
    out.sum().backward()
    assert tuple(a.grad.shape) == (0, 3, 4)
    np.testing.assert_array_equal(b.grad.cpu().numpy(), np.zeros((4, 5)))
    z = vt.matmul(mk(np.zeros((3, 0)), device), mk(np.zeros((0, 2)), device))
    np.testing.assert_array_equal(z.cpu().numpy(), np.zeros((3, 2)))


def test_matmul_errors(device):
    a, b = mk(np.ones((2, 3)), device), mk(np.ones((4, 5)), device)
    with pytest.raises(vt.ShapeError, match=r"\(2, 3\) and \(4, 5\).*inner dimensions 3 and 4"):
        vt.matmul(a, b)
    with pytest.raises(vt.ShapeError, match="batch dimensions"):
        vt.matmul(mk(np.ones((2, 3, 4)), device), mk(np.ones((3, 4, 5)), device))
    with pytest.raises(vt.ShapeError, match="at least 1 dimension"):
        vt.matmul(mk(np.ones(()), device), mk(np.ones(3), device))
    with pytest.raises(vt.DTypeError, match="float32 and float64"):
        vt.matmul(mk(np.ones((2, 2)), device, vt.float32), mk(np.ones((2, 2)), device))
    with pytest.raises(vt.ShapeError, match="2-d"):
        vt.mm(mk(np.ones((2, 2, 2)), device), mk(np.ones((2, 2)), device))
    with pytest.raises(vt.ShapeError, match="batch sizes differ"):
        vt.bmm(mk(np.ones((2, 2, 3)), device), mk(np.ones((3, 3, 2)), device))
    with pytest.raises(vt.ShapeError, match="3 vs 4"):
        vt.dot(mk(np.ones(3), device), mk(np.ones(4), device))
    with pytest.raises(vt.ShapeError, match="weight in_features"):
        vt.linear(mk(np.ones((2, 3)), device), mk(np.ones((5, 4)), device))


def test_mm_bmm_dot_mv_outer(device):
    r = np.random.randn
    check_op(vt.mm, np.matmul, [r(3, 4), r(4, 2)], device=device)
    check_op(vt.bmm, np.matmul, [r(2, 3, 4), r(2, 4, 2)], device=device)
    check_op(vt.dot, np.dot, [r(5), r(5)], device=device)
    check_op(vt.mv, np.matmul, [r(3, 5), r(5)], device=device)
    check_op(vt.outer, np.outer, [r(3), r(4)], device=device)
    x = mk(r(3, 4), device)
    assert_close(x.mm(mk(np.eye(4), device)), x.cpu().numpy())


@pytest.mark.parametrize("xs,ws,bias", [((5, 4), (3, 4), True), ((2, 3, 4), (6, 4), True), ((2, 3, 4), (6, 4), False),
                                        ((4,), (3, 4), True), ((2, 4), (4,), False)])
def test_linear(xs, ws, bias, device):
    r = np.random.randn
    arrays = [r(*xs), r(*ws)] + ([r(ws[0]) if len(ws) == 2 else r()] if bias else [])

    def ref(x, w, b=None):
        y = x @ w.T
        return y + b if b is not None else y
    check_op(lambda x, w, *b: vt.linear(x, w, *b), ref, arrays, device=device)


def test_linear_keyword_bias_and_torch(device):
    x, w, b = np.random.randn(2, 3, 4), np.random.randn(5, 4), np.random.randn(5)
    tx, tw, tb = mk(x, device, rg=True), mk(w, device, rg=True), mk(b, device, rg=True)
    out = vt.linear(tx, weight=tw, bias=tb)
    rx, rw, rb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ref = torch.nn.functional.linear(rx, rw, rb)
    g = np.random.randn(*ref.shape)
    out.backward(mk(g, device))
    ref.backward(torch.tensor(g))
    assert_close(out, ref.detach().numpy())
    for t, r in ((tx, rx), (tw, rw), (tb, rb)):
        assert_close(t.grad, r.grad.numpy())


@pytest.mark.parametrize("dtype", LOWP)
def test_linear_dtypes(dtype, device):
    x, w, b = np.random.randn(4, 8), np.random.randn(3, 8), np.random.randn(3)
    tx, tw, tb = (mk(a, device, dtype, rg=True) for a in (x, w, b))
    out = vt.linear(tx, tw, tb)
    assert out.dtype is dtype
    f = [t.detach().to(vt.float64).cpu().numpy() for t in (tx, tw, tb)]
    assert_close(out, f[0] @ f[1].T + f[2], dtype=dtype)
    out.sum().backward()
    assert tw.grad.dtype is dtype
    assert_close(tb.grad, np.full(3, 4.0), dtype=dtype)


def test_addmm_baddbmm(device):
    r = np.random.randn
    check_op(lambda i, a, b: vt.addmm(i, a, b, beta=0.5, alpha=2.0), lambda i, a, b: 0.5 * i + 2.0 * (a @ b),
             [r(4), r(3, 5), r(5, 4)], device=device)
    check_op(lambda i, a, b: vt.baddbmm(i, a, b, alpha=-1.5), lambda i, a, b: i - 1.5 * (a @ b),
             [r(2, 3, 1), r(2, 3, 5), r(2, 5, 4)], device=device)
    # beta=0 ignores nan in input, as PyTorch
    out = vt.addmm(mk(np.full((2, 2), np.nan), device), mk(np.eye(2), device), mk(np.eye(2), device), beta=0)
    np.testing.assert_array_equal(out.cpu().numpy(), np.eye(2))


def test_only_needed_grads(device):
    a = mk(np.random.randn(3, 4), device, rg=True)
    b = mk(np.random.randn(4, 2), device)
    (a @ b).sum().backward()
    assert b.grad is None
    assert_close(a.grad, np.ones((3, 2)) @ b.cpu().numpy().T)


def test_keyword_binding_errors():
    x, w = vt.randn(2, 3), vt.randn(4, 3)
    with pytest.raises(TypeError, match="missing required argument 'weight'"):
        vt.linear(x)
    with pytest.raises(TypeError, match="multiple values for argument 'weight'"):
        vt.linear(x, w, weight=w)
    assert tuple(vt.linear(input=x, weight=w).shape) == (2, 4)


@pytest.mark.parametrize("dtype", [vt.bfloat16, vt.float16])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_autocast_op_equals_explicit_casts(device, dtype, bias):
    """``linear_autocast`` (what CUDA autocast runs for linear): the casts happen inside one op. Its output,
    and the gradients of operands already in the low dtype, equal casting by hand and calling linear, bit
    for bit. Float32 operands get float32 gradients straight from the float32 accumulators (not rounded to
    the low dtype first): they match a float64 reference from the rounded operands to float32 precision."""
    rng = np.random.default_rng(3)
    xa, wa, ba = rng.standard_normal((2, 5, 8)), rng.standard_normal((6, 8)), rng.standard_normal(6)

    def leaves(x_dtype):
        return (vt.tensor(xa, dtype=x_dtype, device=device, requires_grad=True),
                vt.tensor(wa, dtype=vt.float32, device=device, requires_grad=True),
                vt.tensor(ba, dtype=vt.float32, device=device, requires_grad=True) if bias else None)

    def f64(t):
        return t.detach().to(vt.float64).cpu().numpy()

    for x_dtype in (vt.float32, dtype):
        x, w, b = leaves(x_dtype)
        y = vt.ops.vt.linear_autocast(x, w, b, dtype)
        assert y.dtype is dtype
        up = vt.tensor(rng.standard_normal(y.shape), dtype=dtype, device=device)
        y.backward(up)
        got = [t.grad for t in (x, w, b) if t is not None]
        assert [g.dtype for g in got] == [t.dtype for t in (x, w, b) if t is not None]
        x2, w2, b2 = leaves(x_dtype)
        y2 = vt.nn.functional.linear(x2.to(dtype), w2.to(dtype), None if b2 is None else b2.to(dtype))
        y2.backward(up)
        np.testing.assert_array_equal(f64(y), f64(y2))
        want = [t.grad for t in (x2, w2, b2) if t is not None]
        xr, wr, ur = (f64(t.to(dtype)) for t in (x, w, up))
        refs = [ur @ wr, ur.reshape(-1, 6).T @ xr.reshape(-1, 8)] + ([ur.reshape(-1, 6).sum(0)] if bias else [])
        for g, h, ref in zip(got, want, refs):
            if g.dtype is dtype:
                np.testing.assert_array_equal(f64(g), f64(h))
            else:
                np.testing.assert_allclose(f64(g), ref, rtol=1e-5, atol=1e-5)
        ref = xa @ wa.T + (ba if bias else 0)
        np.testing.assert_allclose(f64(y), ref, rtol=5e-2, atol=5e-2)


def test_linear_autocast_saves_its_low_precision_copies(device):
    """The op saves the copies it cast (not the float32 operands), as PyTorch's cast nodes save their
    outputs; an operand already in the low dtype is saved itself, so modifying it in place before backward
    is caught. Without autograd the copies are dropped with the call."""
    from vibetensor.errors import AutogradError
    rng = np.random.default_rng(4)
    x = vt.tensor(rng.standard_normal((3, 8)), dtype=vt.float32, device=device, requires_grad=True)
    w = vt.tensor(rng.standard_normal((5, 8)), dtype=vt.float32, device=device, requires_grad=True)
    y = vt.ops.vt.linear_autocast(x, w, None, vt.bfloat16)
    saved = y.grad_fn.ctx.saved
    assert [t.dtype for t in saved] == [vt.bfloat16, vt.bfloat16]
    np.testing.assert_array_equal(saved[0].float().cpu().numpy(), x.detach().to(vt.bfloat16).float().cpu().numpy())
    with vt.no_grad():
        x.mul_(2.0)  # the copy, not x, is what backward reads: the weight gradient uses x as it was
    up = vt.ones(3, 5, dtype=vt.bfloat16, device=device)
    y.backward(up)
    want = (up.float().cpu().numpy().T @ (x.detach().cpu().numpy() / 2).astype(np.float32))
    np.testing.assert_allclose(w.grad.cpu().numpy(), want, rtol=2e-2, atol=2e-2)
    xl = vt.tensor(rng.standard_normal((3, 8)), dtype=vt.bfloat16, device=device, requires_grad=True)
    y2 = vt.ops.vt.linear_autocast(xl, w, None, vt.bfloat16)
    assert y2.grad_fn.ctx.saved[0].dtype == vt.bfloat16 and y2.grad_fn.ctx.args[0].dtype == vt.bfloat16
    with vt.no_grad():
        xl.add_(1.0)
    with pytest.raises(AutogradError, match="modified by an inplace"):
        y2.backward(up)
    with vt.no_grad():
        y3 = vt.ops.vt.linear_autocast(x, w, None, vt.bfloat16)
    assert y3.grad_fn is None and y3.dtype == vt.bfloat16
