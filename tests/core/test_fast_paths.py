"""The dispatcher's fast paths (dispatcher.call_view for view methods, dispatcher.call_binary for
+ * @ on CPU float tensors, GELU handing its erf values to backward) against the general path: the
same values, dtypes, nodes, errors, and library overrides."""
import math

import numpy as np
import pytest

import vibetensor as vt

_erf = np.vectorize(math.erf)



@pytest.mark.parametrize("dt", [vt.float32, vt.float64, vt.bfloat16])
def test_gelu_backward_reuses_forward_erf_bit_for_bit(dt):
    # on numpy float32/float64 the forward hands its erf values to backward (dispatcher.Keep); the
    # gradient must be the one a fresh gelu_backward computes, to the bit, and match float64
    a = np.random.default_rng(3).standard_normal((7, 13)) * 3
    x = vt.tensor(a, dtype=dt, requires_grad=True)
    y = vt.gelu(x)
    assert (y.grad_fn.ctx.kept is not None) == (dt is not vt.bfloat16)
    g = vt.tensor(np.random.default_rng(4).standard_normal((7, 13)), dtype=dt)
    y.backward(g)
    fresh = vt.ops.vt.gelu_backward(g, x.detach())
    np.testing.assert_array_equal(x.grad.float().numpy(), fresh.float().numpy())
    xa = x.detach().double().numpy()
    ref = g.double().numpy() * (0.5 * (1 + _erf(xa / math.sqrt(2))) + xa * np.exp(-xa ** 2 / 2) / math.sqrt(2 * math.pi))
    tol = {vt.float32: 1e-5, vt.float64: 1e-12, vt.bfloat16: 2e-2}[dt]
    np.testing.assert_allclose(x.grad.double().numpy(), ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("dt", [vt.float32, vt.float64])
def test_operator_fast_path_matches_dispatch(dt):
    # a + b, a * b, a @ b on CPU float tensors that record nothing skip the general dispatcher
    # (dispatcher.call_binary): results, dtypes, errors and library overrides must be the dispatcher's
    from vibetensor.library import Library
    rng = np.random.default_rng(5)
    V = vt.ops.vt
    cases = [((3, 4), (3, 4)), ((3, 1), (1, 4)), ((), ()), ((2, 3, 4), (4,))]
    for sa, sb in cases:
        a = vt.tensor(rng.standard_normal(sa), dtype=dt)
        b = vt.tensor(rng.standard_normal(sb), dtype=dt)
        for fast, ref, npf in ((a + b, V.add(a, b), np.add), (a * b, V.mul(a, b), np.multiply)):
            assert fast.dtype is ref.dtype is dt and fast.shape == ref.shape
            np.testing.assert_array_equal(fast.numpy(), ref.numpy())
            np.testing.assert_array_equal(fast.numpy(), npf(a.numpy(), b.numpy()))
    m = vt.tensor(rng.standard_normal((5, 3)), dtype=dt).t()  # non-contiguous
    n = vt.tensor(rng.standard_normal((5, 2)), dtype=dt)
    np.testing.assert_array_equal((m @ n).numpy(), V.matmul(m, n).numpy())
    with pytest.raises(vt.ShapeError, match=r"\(3, 4\).*\(5,\)"):
        vt.ones(3, 4, dtype=dt) + vt.ones(5, dtype=dt)
    with pytest.raises(vt.ShapeError):
        vt.ones(3, 4, dtype=dt) @ vt.ones(3, 4, dtype=dt)
    with Library("vt", "IMPL") as lib:
        lib.impl("mul", lambda x, y: x * 0 + 7, dispatch_key="CPU")
        assert (vt.ones(2, dtype=dt) * vt.ones(2, dtype=dt)).numpy().tolist() == [7, 7]
    x = vt.ones(2, dtype=dt, requires_grad=True)
    y = x * vt.ones(2, dtype=dt)  # records: the general path
    assert y.grad_fn is not None
    with vt.no_grad():
        assert (x * x).grad_fn is None and not (x * x).requires_grad



def test_view_methods_take_library_overrides_and_record_like_dispatch():
    # Tensor methods reach view ops through dispatcher.call_view, which skips the general path's
    # bookkeeping: kernels, backward formulas and Autograd kernels registered by a library still apply
    from vibetensor.library import Library
    x = vt.randn(3, 4, requires_grad=True)
    y = x.transpose(0, 1)
    assert y.grad_fn.name() == "TransposeBackward" and y._base is x and y._vc is x._vc
    y.reshape(12).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.ones((3, 4)))
    with Library("vt", "IMPL") as lib:
        lib.impl("view", lambda a, shape: a.reshape(shape) * 0 + 5, dispatch_key="CPU")
        assert (x.detach().view(12).numpy() == 5).all()
    seen = []
    with Library("vt", "IMPL") as lib:
        lib.impl("transpose", lambda a, d0, d1: seen.append((d0, d1)) or vt.ops.vt.permute(a, (1, 0)),
                 dispatch_key="Autograd")
        x.transpose(1, 0)
        assert seen == [(1, 0)]
    with Library("vt", "IMPL") as lib:
        lib.impl_backward("permute", lambda ctx, g: g.permute(1, 0) * 3)
        x.grad = None
        x.permute(1, 0).sum().backward()
        np.testing.assert_array_equal(x.grad.numpy(), np.full((3, 4), 3.0))
    with vt.no_grad():
        assert x.unsqueeze(0).grad_fn is None and not x.unsqueeze(0).requires_grad


def test_view_methods_under_autocast_keep_the_fast_path_and_its_results(monkeypatch):
    from vibetensor.core import dispatcher as D
    calls = []
    orig = D.dispatch
    monkeypatch.setattr(D, "dispatch", lambda op, args, kwargs: calls.append(op.name) or orig(op, args, kwargs))
    x = vt.randn(2, 3, 4, requires_grad=True)
    w = vt.randn(4, 5, requires_grad=True)
    with vt.autocast("cpu", dtype=vt.bfloat16):
        y = x.transpose(0, 1).unsqueeze(0).view(3, 2, 4)
        z = y @ w  # autocast still acts on the ops it lists
    assert y.dtype is vt.float32 and y.grad_fn.name() == "ViewBackward"
    assert not {"transpose", "unsqueeze", "view"} & set(calls) and "matmul" in calls
    assert z.dtype is vt.bfloat16
    z.float().sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.broadcast_to(w.detach().numpy().sum(1), (2, 3, 4)),
                               rtol=2e-2, atol=2e-2)


def test_devices_are_interned_so_the_same_device_test_is_identity(monkeypatch):
    """Every spelling of a device gives one object (tensor.device, vt.device("cpu"), Device("cpu"), .to,
    pickles and copies), so tensors made different ways meet the dispatcher's one-pass fast path."""
    import copy
    import pickle
    from vibetensor.core import dispatcher as D
    from vibetensor.core.device import CPU, Device
    a = vt.randn(3, 4)
    b = vt.ones(4).to("cpu")
    c = vt.tensor(np.ones((3, 4)), dtype=vt.float32, device=vt.device("cpu"))
    assert a.device is b.device is c.device is CPU is Device("cpu") is Device("cpu", None)
    cuda0 = Device("cuda", np.int64(0))
    assert cuda0 is Device("cuda", 0) and type(cuda0.index) is int and str(cuda0) == "cuda:0"
    for d in (CPU, cuda0, Device("cpu", 1)):
        assert pickle.loads(pickle.dumps(d)) is d and copy.copy(d) is d and copy.deepcopy(d) is d
    with pytest.raises(Exception, match="cannot assign"):
        cuda0.index = 1  # still frozen: the object is shared

    def general_path(op, tensors):
        raise AssertionError(f"{op.name} took the general path")
    monkeypatch.setattr(D, "_common_device", general_path)
    w = vt.nn.Parameter(vt.randn(5, 4).to("cpu"))
    bias = vt.nn.Parameter(vt.zeros(5, device="cpu"))
    out = vt.nn.functional.layer_norm(vt.nn.functional.linear(a + c, w, bias), (5,))
    np.testing.assert_allclose(out.numpy(force=True).mean(-1), 0, atol=1e-5)


def test_backward_casts_skip_the_dispatcher_and_match_the_dispatched_cast(monkeypatch):
    """Mixed-dtype binary ops, reductions and ``.to`` cast their gradients back to each input's dtype in
    backward by the cast kernel alone (``ops._util.cast_grad``): same values and dtypes as the dispatched
    cast, and no ``to_dtype`` call reaches the dispatcher."""
    from vibetensor.core import dispatcher as D
    rng = np.random.default_rng(3)
    xa, ya = rng.standard_normal((3, 5)), rng.standard_normal((1, 5))
    x = vt.tensor(xa, dtype=vt.float32, requires_grad=True)
    y = vt.tensor(ya, dtype=vt.float64, requires_grad=True)
    h = vt.tensor(xa, dtype=vt.float16, requires_grad=True)
    out = ((x * y).sum(dtype=vt.float64) + (h.to(vt.float64) * 2.0).sum() + x.to(vt.float64).sum())
    real = D.dispatch
    seen = []

    def spy(op, args, kwargs):
        seen.append(op.name)
        return real(op, args, kwargs)
    monkeypatch.setattr(D, "dispatch", spy)
    out.backward()
    assert "to_dtype" not in seen
    assert x.grad.dtype is vt.float32 and y.grad.dtype is vt.float64 and h.grad.dtype is vt.float16
    np.testing.assert_allclose(x.grad.numpy(), np.broadcast_to(ya, (3, 5)) + 1, rtol=1e-6)
    np.testing.assert_allclose(y.grad.numpy(), xa.astype(np.float32).sum(0, keepdims=True), rtol=1e-6)
    np.testing.assert_array_equal(h.grad.numpy(), np.full((3, 5), 2.0, np.float16))
