"""Piecewise activations at their boundaries (where PyTorch's one-sided gradient rules decide), and the
activations added alongside (selu, celu, logsigmoid, softsign, glu, threshold, hardtanh): forward and
backward against PyTorch on random float32/float64 inputs, odd and non-contiguous shapes, and finite
differences; the nn modules that wrap them."""
import numpy as np
import pytest

import vibetensor as vt
from tests.opcheck import assert_close, check_op, noncontig

torch = pytest.importorskip("torch")
F = vt.nn.functional
TF = torch.nn.functional


def _both(vf, tf, x, dtype=vt.float64, make=None, up=None):
    """(vt output, vt grad) and (torch output, torch grad) of ``f(x)`` under upstream ``up``."""
    v = make(x) if make else vt.tensor(x, dtype=dtype)
    v.requires_grad_(True)
    t = torch.tensor(x, dtype=getattr(torch, dtype.name), requires_grad=True)
    vo, to = vf(v), tf(t)
    up = np.random.randn(*to.shape) if up is None else up
    vo.backward(vt.tensor(up, dtype=vo.dtype))
    to.backward(torch.tensor(up, dtype=to.dtype))
    return (vo, v.grad), (to.detach().numpy(), t.grad.numpy())


def _match(vf, tf, x, dtype=vt.float64, make=None):
    (vo, vg), (to, tg) = _both(vf, tf, x, dtype, make)
    assert vo.dtype is dtype
    assert_close(vo, to, dtype=dtype, msg="forward")
    assert_close(vg, tg, dtype=dtype, msg="grad")


# (vt fn, torch fn, inputs that sit on each boundary)
EDGES = {
    "relu": (F.relu, TF.relu, [0.0, -1.0, 1.0]),
    "relu6": (F.relu6, TF.relu6, [0.0, 6.0, 3.0, -1.0, 7.0]),
    "hardtanh": (F.hardtanh, TF.hardtanh, [-1.0, 0.0, 1.0, -2.0, 2.0]),
    "hardtanh_args": (lambda a: F.hardtanh(a, -0.5, 2.0), lambda a: TF.hardtanh(a, -0.5, 2.0), [-0.5, 0.0, 2.0]),
    "leaky_relu": (lambda a: F.leaky_relu(a, 0.1), lambda a: TF.leaky_relu(a, 0.1), [0.0, -1.0, 1.0]),
    "hardsigmoid": (F.hardsigmoid, TF.hardsigmoid, [-3.0, 3.0, 0.0, -4.0, 4.0]),
    "hardswish": (F.hardswish, TF.hardswish, [-3.0, 3.0, 0.0, -4.0, 4.0]),
    "elu": (lambda a: F.elu(a, 0.5), lambda a: TF.elu(a, 0.5), [0.0, -1.0, 1.0]),
    "selu": (F.selu, TF.selu, [0.0, -1.0, 1.0]),
    "celu": (lambda a: F.celu(a, 0.7), lambda a: TF.celu(a, 0.7), [0.0, -1.0, 1.0]),
    "threshold": (lambda a: F.threshold(a, 0.5, -2.0), lambda a: TF.threshold(a, 0.5, -2.0), [0.5, 0.0, 1.0]),
    "logsigmoid": (F.logsigmoid, TF.logsigmoid, [0.0, -1.0, 1.0]),
    "softsign": (F.softsign, TF.softsign, [0.0, -1.0, 1.0]),
    "clamp": (lambda a: vt.clamp(a, -1.0, 1.0), lambda a: torch.clamp(a, -1.0, 1.0), [-1.0, 1.0, 0.0, -2.0, 2.0]),
    "clip_min": (lambda a: vt.clip(a, min=-1.0), lambda a: torch.clip(a, min=-1.0), [-1.0, 0.0, -2.0]),
}


@pytest.mark.parametrize("name", sorted(EDGES))
def test_gradient_at_boundaries_matches_torch(name):
    vf, tf, xs = EDGES[name]
    (vo, vg), (to, tg) = _both(vf, tf, np.array(xs), up=np.ones(len(xs)))
    np.testing.assert_allclose(vo.detach().numpy(), to, rtol=1e-12, atol=0)
    # (rtol: PyTorch's kernels hold some constants, 1/6 and 1/alpha, in float32)
    np.testing.assert_allclose(vg.numpy(), tg, rtol=1e-7, atol=0)


def test_boundary_values_from_the_audit():
    # relu6 and hardtanh pass no gradient at their clip points, clamp does (PyTorch)
    for fn, xs, want in [(F.relu6, [0.0, 6.0, 3.0], [0, 0, 1]), (F.hardtanh, [-1.0, 0.0, 1.0], [0, 1, 0]),
                         (lambda a: F.leaky_relu(a, 0.1), [0.0], [0.1]),
                         (lambda a: vt.clamp(a, 0.0, 6.0), [0.0, 6.0, 3.0], [1, 1, 1])]:
        x = vt.tensor(xs, requires_grad=True)
        fn(x).sum().backward()
        np.testing.assert_allclose(x.grad.numpy(), want, rtol=1e-7)


def test_nan_gradients_follow_torch_for_hardtanh_family():
    # hardtanh/relu6 pass the gradient at NaN (neither <= min nor >= max), hardsigmoid does not
    for vf, tf in [(F.hardtanh, TF.hardtanh), (F.relu6, TF.relu6), (F.hardsigmoid, TF.hardsigmoid),
                   (lambda a: F.leaky_relu(a, 0.2), lambda a: TF.leaky_relu(a, 0.2)),
                   (lambda a: F.threshold(a, 0.0, 5.0), lambda a: TF.threshold(a, 0.0, 5.0))]:
        (vo, vg), (to, tg) = _both(vf, tf, np.array([np.nan, 0.5]), up=np.ones(2))
        np.testing.assert_array_equal(vo.detach().numpy(), to)
        np.testing.assert_allclose(vg.numpy(), tg, rtol=1e-7, atol=0)


SMOOTH = {  # functions to compare on random inputs
    "hardtanh": (lambda a: F.hardtanh(a, -0.7, 1.3), lambda a: TF.hardtanh(a, -0.7, 1.3)),
    "relu6": (lambda a: F.relu6(a * 4), lambda a: TF.relu6(a * 4)),
    "hardsigmoid": (lambda a: F.hardsigmoid(a * 3), lambda a: TF.hardsigmoid(a * 3)),
    "hardswish": (lambda a: F.hardswish(a * 3), lambda a: TF.hardswish(a * 3)),
    "leaky_relu": (lambda a: F.leaky_relu(a, 0.2), lambda a: TF.leaky_relu(a, 0.2)),
    "threshold": (lambda a: F.threshold(a, 0.1, 20.0), lambda a: TF.threshold(a, 0.1, 20.0)),
    "selu": (F.selu, TF.selu),
    "celu": (lambda a: F.celu(a, 1.5), lambda a: TF.celu(a, 1.5)),
    "celu_default": (F.celu, TF.celu),
    "logsigmoid": (lambda a: F.logsigmoid(a * 30), lambda a: TF.logsigmoid(a * 30)),
    "softsign": (F.softsign, TF.softsign),
    "glu_last": (F.glu, TF.glu),
    "glu_dim0": (lambda a: F.glu(a, 0), lambda a: TF.glu(a, 0)),
    "glu_dim1": (lambda a: F.glu(a, -2), lambda a: TF.glu(a, -2)),
}


@pytest.mark.parametrize("dtype", [vt.float32, vt.float64])
@pytest.mark.parametrize("name", sorted(SMOOTH))
def test_activations_match_torch_on_random_inputs(name, dtype):
    vf, tf = SMOOTH[name]
    x = np.random.randn(6, 4, 10)
    _match(vf, tf, x, dtype)
    _match(vf, tf, np.random.randn(4, 6, 2), dtype, make=lambda a: noncontig(a, dtype=dtype))


@pytest.mark.parametrize("name", ["selu", "celu", "logsigmoid", "softsign", "glu_last", "hardswish"])
def test_activation_grads_match_finite_differences(name):
    vf = SMOOTH[name][0]
    x = np.random.randn(3, 4) + 0.05  # off the kinks, where finite differences hold
    ref = {"selu": lambda a: 1.0507009873554805 * np.where(a > 0, a, 1.6732632423543772 * np.expm1(a)),
           "celu": lambda a: np.where(a > 0, a, 1.5 * np.expm1(a / 1.5)),
           "logsigmoid": lambda a: -np.logaddexp(0, -30 * a),
           "softsign": lambda a: a / (1 + np.abs(a)),
           "glu_last": lambda a: a[:, :2] / (1 + np.exp(-a[:, 2:])),
           "hardswish": lambda a: 3 * a * np.clip(3 * a + 3, 0, 6) / 6}[name]
    check_op(vf, ref, [x])


def test_logsigmoid_is_stable_for_large_inputs():
    x = vt.tensor([-1000.0, -30.0, 0.0, 30.0, 1000.0], dtype=vt.float32, requires_grad=True)
    out = F.logsigmoid(x)
    out.sum().backward()
    t = torch.tensor([-1000.0, -30.0, 0.0, 30.0, 1000.0], requires_grad=True)
    TF.logsigmoid(t).sum().backward()
    assert_close(out, TF.logsigmoid(t).detach().numpy())
    assert_close(x.grad, t.grad.numpy())


def test_inplace_variants_match_out_of_place():
    x = np.random.randn(3, 5) * 3
    for name, kw in [("hardtanh", {}), ("relu6", {}), ("selu", {}), ("celu", {"alpha": 0.5}),
                     ("hardsigmoid", {}), ("hardswish", {}), ("leaky_relu", {"negative_slope": 0.3})]:
        a = vt.tensor(x)
        out = getattr(F, name)(a, inplace=True, **kw)
        assert out is a
        assert_close(a, getattr(TF, name)(torch.tensor(x), **kw).numpy())
    a = vt.tensor(x)
    F.threshold(a, 0.0, -1.0, inplace=True)
    assert_close(a, TF.threshold(torch.tensor(x), 0.0, -1.0).numpy())


def test_activation_modules_match_torch():
    x = np.random.randn(4, 6)
    for vm, tm in [(vt.nn.SELU(), torch.nn.SELU()), (vt.nn.CELU(0.5), torch.nn.CELU(0.5)),
                   (vt.nn.GLU(), torch.nn.GLU()), (vt.nn.GLU(0), torch.nn.GLU(0)),
                   (vt.nn.LogSigmoid(), torch.nn.LogSigmoid()), (vt.nn.Softsign(), torch.nn.Softsign()),
                   (vt.nn.Hardtanh(-2.0, 0.5), torch.nn.Hardtanh(-2.0, 0.5)),
                   (vt.nn.Threshold(0.2, -3.0), torch.nn.Threshold(0.2, -3.0)),
                   (vt.nn.ReLU6(), torch.nn.ReLU6())]:
        _match(vm, tm, x)
    assert repr(vt.nn.GLU(1)) == "GLU(dim=1)"
    assert repr(vt.nn.CELU(0.5, inplace=True)) == "CELU(alpha=0.5, inplace=True)"
    assert repr(vt.nn.Hardtanh()) == "Hardtanh(min_val=-1.0, max_val=1.0)"


def test_activation_argument_errors():
    with pytest.raises(vt.ShapeError, match="halving dimension must be even"):
        F.glu(vt.randn(3, 5))
    with pytest.raises(vt.ShapeError, match="0-d"):
        F.glu(vt.tensor(1.0))
    with pytest.raises(IndexError, match="out of range"):
        F.glu(vt.randn(2, 4), 2)
    with pytest.raises(ValueError, match="alpha cannot be 0"):
        F.celu(vt.randn(3), 0.0)
    with pytest.raises(ValueError, match="min_val"):
        F.hardtanh(vt.randn(3), 1.0, -1.0)
    with pytest.raises(ValueError, match="min_val"):
        vt.nn.Hardtanh(1.0, -1.0)
