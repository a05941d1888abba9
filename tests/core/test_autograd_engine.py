import numpy as np
import pytest

import vibetensor as vt
from tests.opcheck import check_op


def test_add_mul_div_broadcast_grads():
    check_op(lambda a, b: a * b + a / (b * b + 1.0) - b, lambda a, b: a * b + a / (b * b + 1.0) - b,
             [np.random.randn(3, 4), np.random.randn(4)])


def test_backward_twice_raises_without_retain_graph():
    x = vt.randn(3, requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 4 * x.detach().numpy(), rtol=1e-6)
    z = (x * x).sum()
    z.backward()
    with pytest.raises(vt.AutogradError, match="second time"):
        z.backward()


def test_nonscalar_backward_needs_gradient():
    x = vt.randn(3, requires_grad=True)
    with pytest.raises(vt.AutogradError, match="scalar outputs"):
        (x * 2).backward()


def test_inplace_on_saved_tensor_raises():
    x = vt.randn(3, requires_grad=True)
    y = x * 1.0
    z = (y * y).sum()
    y.add_(1.0)
    with pytest.raises(vt.AutogradError, match="modified by an inplace operation"):
        z.backward()


def test_inplace_on_leaf_requiring_grad_raises():
    x = vt.randn(3, requires_grad=True)
    with pytest.raises(vt.AutogradError, match="leaf"):
        x.add_(1.0)
    with vt.no_grad():
        x.add_(1.0)
    assert x._version == 1


def test_hooks_and_post_accumulate():
    x = vt.randn(3, requires_grad=True)
    seen = []
    x.register_hook(lambda g: g * 2)
    x.register_post_accumulate_grad_hook(lambda t: seen.append(t.grad.numpy().copy()))
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.full(3, 6.0))
    assert len(seen) == 1


def test_autograd_grad_does_not_touch_leaves():
    x = vt.randn(4, requires_grad=True)
    y = (x * x).sum()
    (g,) = vt.autograd.grad(y, x)
    np.testing.assert_allclose(g.numpy(), 2 * x.detach().numpy(), rtol=1e-6)
    assert x.grad is None


def test_custom_function():
    class Cube(vt.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * 3 * x * x

    x = vt.tensor(np.random.randn(5), dtype=vt.float64, requires_grad=True)
    assert vt.autograd.gradcheck(Cube.apply, (x,))
    Cube.apply(x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 3 * x.detach().numpy() ** 2)


def test_type_promotion_matches_torch():
    torch = pytest.importorskip("torch")
    pairs = [(vt.int32, 2.5), (vt.uint8, vt.int8), (vt.float16, vt.bfloat16), (vt.int64, vt.float16),
             (vt.bool, 3), (vt.float16, 1.0), (vt.int8, 1000)]
    for a, b in pairs:
        ta = vt.ones(2, dtype=a)
        tb = vt.ones(2, dtype=b) if isinstance(b, vt.dtype) else b
        got = (ta + tb).dtype
        tta = torch.ones(2, dtype=getattr(torch, a.name))
        ttb = torch.ones(2, dtype=getattr(torch, b.name)) if isinstance(b, vt.dtype) else b
        assert got.name == str((tta + ttb).dtype).replace("torch.", ""), (a, b)


def test_library_define_and_override():
    from vibetensor.library import Library
    with Library("ext", "DEF") as lib:
        lib.define("ext::square(Tensor x) -> Tensor")
        lib.impl("square", lambda x: x * x, dispatch_key="CPU")
        out = vt.ops.ext.square(vt.tensor([1.0, 2.0, 3.0]))
        np.testing.assert_allclose(out.numpy(), [1, 4, 9])
    with Library("vt", "IMPL") as lib:
        lib.impl("neg", lambda a: a * 0 + 42, dispatch_key="CPU")
        assert (-vt.tensor([1.0])).item() == 42
    assert (-vt.tensor([1.0])).item() == -1


def test_saved_tensors_are_released_after_backward():
    import gc
    import weakref
    x = vt.randn(50, requires_grad=True)
    h = x * 2.0
    ref = weakref.ref(h)
    loss = (h * h).sum()  # mul saves h
    del h
    loss.backward()
    gc.collect()
    assert ref() is None, "a saved activation outlived backward while the graph is still referenced"
    assert loss.grad_fn is not None


def test_one_grad_for_two_leaves_is_not_shared():
    a = vt.randn(3, requires_grad=True)
    b = vt.randn(3, requires_grad=True)
    for _ in range(2):
        (a + b).sum().backward()  # add returns the same g for both inputs
    assert a.grad is not b.grad
    np.testing.assert_allclose(a.grad.numpy(), [2, 2, 2])
    np.testing.assert_allclose(b.grad.numpy(), [2, 2, 2])


def test_backward_releases_the_graph_behind_a_kept_loss():
    """After backward (no retain_graph) a kept loss tensor holds its own node only: the rest of the graph
    is freed by reference counting (no cyclic-collector work each step), and a second backward still
    raises the usual error."""
    import gc
    import weakref

    from vibetensor.errors import AutogradError
    x = vt.randn(3, requires_grad=True)
    h = (x * 2).exp()
    inner = weakref.ref(h.grad_fn)
    loss = h.sum()
    del h
    was = gc.isenabled()
    gc.disable()
    try:
        loss.backward()
        assert inner() is None
    finally:
        if was:
            gc.enable()
    with pytest.raises(AutogradError, match="second time"):
        loss.backward()
    y = vt.randn(3, requires_grad=True)
    kept = (y * 3).exp()
    out = kept.sum()
    out.backward(retain_graph=True)  # retained: the graph stays usable
    out.backward()
    np.testing.assert_allclose(y.grad.numpy(), 2 * 3 * np.exp(3 * y.detach().numpy()), rtol=1e-5)


def test_gradient_fanned_out_uncopied_stays_private_to_each_leaf():
    """add hands one gradient tensor to both inputs without copying it; a leaf that receives it (here
    through another add) copies it before it becomes ``.grad``, so an in-place change to ``.grad`` during
    backward (a post-accumulate hook, as DDP's in-place allreduce) cannot reach a path still waiting."""
    a, b, c = (vt.randn(3, requires_grad=True) for _ in range(3))
    q = b * 2.0          # created first: processed after the inner add's leaves
    inner = a + c
    out = inner + q      # backward: one g to both inner and q
    a.register_post_accumulate_grad_hook(lambda t: t.grad.mul_(10.0))
    out.backward(vt.ones(3))
    np.testing.assert_allclose(a.grad.numpy(), [10, 10, 10])
    np.testing.assert_allclose(c.grad.numpy(), [1, 1, 1])
    np.testing.assert_allclose(b.grad.numpy(), [2, 2, 2])
    assert a.grad is not c.grad


_KEEP_SEEN = []


def _keep_op():
    """A test op whose kernel returns ``dispatcher.Keep`` (registered once per process)."""
    from vibetensor.core import dispatcher as D
    op = D.REGISTRY.get("vt::test_keep_scale")
    if op is None:
        @D.defop("test_keep_scale", save=(0,))
        def op(x):
            return D.Keep(x * 3.0, saved={0: x * 2.0}, extra="kept", save_out=True)

        @op.def_backward
        def _(ctx, g):
            _KEEP_SEEN.append((ctx.args[0].numpy().copy(), ctx.saved[0].numpy().copy(), ctx.kept,
                               ctx.out is not None))
            return g * 3.0
    return op


def test_kernel_keep_saves_its_arrays_for_backward():
    """A kernel returning ``dispatcher.Keep``: under autograd the node saves the kernel's array in place of
    the argument (also in ctx.args, so a formula reading arguments sees it), keeps ``extra`` as ctx.kept,
    and saves the output when asked; without autograd the dispatcher returns the plain result."""
    op = _keep_op()
    _KEEP_SEEN.clear()
    x = vt.tensor([1.0, 2.0], requires_grad=True)
    y = op(x)
    np.testing.assert_allclose(y.detach().numpy(), [3.0, 6.0])
    y.sum().backward()
    a0, s0, kept, has_out = _KEEP_SEEN[0]
    np.testing.assert_allclose(a0, [2.0, 4.0])
    np.testing.assert_allclose(s0, [2.0, 4.0])
    assert kept == "kept" and has_out
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 3.0])
    with vt.no_grad():
        z = op(x)
    assert type(z) is vt.Tensor and z.grad_fn is None
    np.testing.assert_allclose(z.numpy(), [3.0, 6.0])


def test_library_override_turns_off_the_mixed_dtype_shortcut():
    """A user kernel for add must not be bypassed by the built-in float32+half CUDA shortcut
    (``OpDef.mixed_cuda``): overriding turns it off, closing the library restores it."""
    from vibetensor.core import dispatcher as D
    from vibetensor.library import Library
    op = D.REGISTRY["vt::add"]
    prev = op.mixed_cuda
    sentinel = object()
    op.mixed_cuda = sentinel
    try:
        with Library("vt", "IMPL") as lib:
            lib.impl("add", lambda a, b, alpha=1: a - b, dispatch_key="CUDA")
            assert op.mixed_cuda is None
        assert op.mixed_cuda is sentinel
    finally:
        op.mixed_cuda = prev



@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_two_gradients_of_one_tensor_sum_without_dispatch(device, monkeypatch):
    """A tensor used twice (the residual stream) gets its two gradients summed by the add kernel directly:
    the right values (float32 and float64), and on CUDA the dispatcher is not entered for the sum (CPU
    float adds skip it anyway: ``dispatcher.call_binary``)."""
    if device == "cuda" and not vt.cuda.is_available():
        pytest.skip("no CUDA device")
    from vibetensor.core import autograd as A
    from vibetensor.core import dispatcher as D
    rng = np.random.default_rng(3)
    for dtype in (vt.float32, vt.float64):
        x = vt.tensor(rng.standard_normal((4, 5)), dtype=dtype, device=device, requires_grad=True)
        w = vt.tensor(rng.standard_normal((5, 5)), dtype=dtype, device=device)
        h = x @ w
        y = (h * 3.0 + h.tanh()).sum()  # h feeds two ops: two gradients meet in the engine
        sums, adds = [], []
        orig_sum, orig_dispatch = A._sum_grads, D.dispatch
        monkeypatch.setattr(A, "_sum_grads", lambda a, b: sums.append(1) or orig_sum(a, b))
        monkeypatch.setattr(D, "dispatch", lambda op, args, kw: (adds.append(op.name) if op.name == "add" else None)
                            or orig_dispatch(op, args, kw))
        y.backward()
        monkeypatch.undo()
        hn, wn = x.detach().cpu().numpy() @ w.cpu().numpy(), w.cpu().numpy()
        want = (3.0 + (1 - np.tanh(hn) ** 2)) @ wn.T
        np.testing.assert_allclose(x.grad.cpu().numpy(), want, rtol=1e-5 if dtype is vt.float32 else 1e-12)
        assert sums and not adds


def test_grad_assignment_is_checked():
    p = vt.ones(3, requires_grad=True)
    with pytest.raises(vt.errors.ShapeError, match=r"assigned grad has shape \(1,\), but the tensor has shape \(3,\)"):
        p.grad = vt.ones(1)
    with pytest.raises(TypeError, match="Tensor or None but got list"):
        p.grad = [1.0, 2.0, 3.0]
    assert p.grad is None
    p.grad = vt.full((3,), 2.0)
    vt.optim.SGD([p], lr=0.5).step()
    assert p.tolist() == [0.0, 0.0, 0.0]
    p.grad = None
    assert p.grad is None


@pytest.mark.parametrize("expr,torch_errs", [
    (lambda lib, y, c: y * 3, False), (lambda lib, y, c: y / 3, False), (lambda lib, y, c: y * c, False),
    (lambda lib, y, c: y / c, False), (lambda lib, y, c: c * y, False), (lambda lib, y, c: c / y, True),
])
def test_only_what_a_gradient_reads_is_saved(expr, torch_errs):
    """As PyTorch: ``y * 3`` saves nothing of y, so changing y in place before backward is no error; ``3 / y``
    reads y for its own gradient and still refuses."""
    import torch
    for lib in (vt, torch):
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        y = x * 1
        z = expr(lib, y, lib.tensor([3.0, 4.0]))
        y.add_(1)
        if torch_errs:
            with pytest.raises(RuntimeError, match="modified by an inplace operation"):
                z.sum().backward()
        else:
            z.sum().backward()
            got = x.grad.tolist()
            if lib is vt:
                vt_grad = got
            else:
                assert np.allclose(vt_grad, got)
