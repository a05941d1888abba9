"""Loss edges and additions: cross_entropy/nll_loss with every target ignored (NaN loss, zero gradient),
smooth_l1_loss, huber_loss, kl_div, cosine_similarity and their modules: forward and backward (input and
target) against PyTorch on random inputs, float32/float64, odd and non-contiguous shapes, every reduction,
and finite differences."""
import warnings

import numpy as np
import pytest

import vibetensor as vt
from tests.opcheck import assert_close, check_op, noncontig

torch = pytest.importorskip("torch")
F = vt.nn.functional
TF = torch.nn.functional

REDUCTIONS = ["none", "mean", "sum"]


def _run(vf, tf, arrays, dtype=vt.float64, make=None, grads=None):
    """Outputs and gradients of vt and torch for the same inputs (``grads``: which inputs require grad)."""
    grads = grads or [True] * len(arrays)
    build = make or (lambda a: vt.tensor(a, dtype=dtype))
    vs, ts = [build(a) for a in arrays], [torch.tensor(a, dtype=getattr(torch, dtype.name)) for a in arrays]
    for v, t, g in zip(vs, ts, grads):
        v.requires_grad_(g)
        t.requires_grad_(g)
    vo, to = vf(*vs), tf(*ts)
    up = np.random.randn(*to.shape)
    vo.backward(vt.tensor(up, dtype=vo.dtype))
    to.backward(torch.tensor(up, dtype=to.dtype))
    return vo, to.detach().numpy(), [(v.grad, t.grad.numpy()) for v, t, g in zip(vs, ts, grads) if g]


def _match(vf, tf, arrays, dtype=vt.float64, make=None, grads=None):
    vo, to, gs = _run(vf, tf, arrays, dtype, make, grads)
    assert vo.dtype is dtype
    assert_close(vo, to, dtype=dtype, msg="forward")
    for i, (vg, tg) in enumerate(gs):
        assert_close(vg, tg, dtype=dtype, msg=f"grad {i}")


# ---------------------------------------------------------------------------------------------- all ignored
@pytest.mark.parametrize("ls", [0.0, 0.3])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shape", [(3, 4), (2, 4, 3)])
def test_cross_entropy_all_targets_ignored_gives_nan_loss_zero_grad(ls, weighted, shape):
    x = np.random.randn(*shape)
    t = np.full((shape[0],) + shape[2:], -100)
    w = np.random.rand(4) + 0.5 if weighted else None
    vx, tx = vt.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out = F.cross_entropy(vx, vt.tensor(t), None if w is None else vt.tensor(w), label_smoothing=ls)
    ref = TF.cross_entropy(tx, torch.tensor(t), None if w is None else torch.tensor(w), label_smoothing=ls)
    assert np.isnan(out.item()) and np.isnan(ref.item())
    out.backward()
    ref.backward()
    np.testing.assert_array_equal(tx.grad.numpy(), 0)
    np.testing.assert_array_equal(vx.grad.numpy(), tx.grad.numpy())


@pytest.mark.parametrize("weighted", [False, True])
def test_nll_loss_all_targets_ignored_gives_nan_loss_zero_grad(weighted):
    x = np.random.randn(3, 5)
    w = np.random.rand(5) + 0.5 if weighted else None
    vx, tx = vt.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out = F.nll_loss(vx, vt.tensor([-100, -100, -100]), None if w is None else vt.tensor(w))
    ref = TF.nll_loss(tx, torch.tensor([-100, -100, -100]), None if w is None else torch.tensor(w))
    assert np.isnan(out.item()) and np.isnan(ref.item())
    out.backward()
    ref.backward()
    np.testing.assert_array_equal(vx.grad.numpy(), tx.grad.numpy())


def test_cross_entropy_audit_case_and_partial_ignore_still_match_torch():
    vx = vt.tensor([[0.3, -1.2, 2.0], [1.0, 0.5, -0.5]], requires_grad=True)
    F.cross_entropy(vx, vt.tensor([-100, -100])).backward()
    np.testing.assert_array_equal(vx.grad.numpy(), np.zeros((2, 3)))
    x, t, w = np.random.randn(5, 4), np.array([1, -100, 3, -100, 0]), np.random.rand(4) + 0.5
    for ls in (0.0, 0.2):
        _match(lambda a: F.cross_entropy(a, vt.tensor(t), vt.tensor(w), label_smoothing=ls),
               lambda a: TF.cross_entropy(a, torch.tensor(t), torch.tensor(w), label_smoothing=ls), [x])
        _match(lambda a: F.nll_loss(a, vt.tensor(t), vt.tensor(w)),
               lambda a: TF.nll_loss(a, torch.tensor(t), torch.tensor(w)), [x])


# ---------------------------------------------------------------------------------------------- regression losses
REGRESSION = {
    "smooth_l1": (lambda r: lambda a, b: F.smooth_l1_loss(a, b, reduction=r),
                  lambda r: lambda a, b: TF.smooth_l1_loss(a, b, reduction=r)),
    "smooth_l1_beta": (lambda r: lambda a, b: F.smooth_l1_loss(a, b, reduction=r, beta=0.3),
                       lambda r: lambda a, b: TF.smooth_l1_loss(a, b, reduction=r, beta=0.3)),
    "smooth_l1_beta0": (lambda r: lambda a, b: F.smooth_l1_loss(a, b, reduction=r, beta=0.0),
                        lambda r: lambda a, b: TF.smooth_l1_loss(a, b, reduction=r, beta=0.0)),
    "huber": (lambda r: lambda a, b: F.huber_loss(a, b, reduction=r),
              lambda r: lambda a, b: TF.huber_loss(a, b, reduction=r)),
    "huber_delta": (lambda r: lambda a, b: F.huber_loss(a, b, reduction=r, delta=2.5),
                    lambda r: lambda a, b: TF.huber_loss(a, b, reduction=r, delta=2.5)),
}


@pytest.mark.parametrize("dtype", [vt.float32, vt.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", sorted(REGRESSION))
def test_regression_losses_match_torch(name, reduction, dtype):
    vf, tf = (f(reduction) for f in REGRESSION[name])
    x, t = np.random.randn(5, 3, 7) * 2, np.random.randn(5, 3, 7) * 2
    _match(vf, tf, [x, t], dtype)
    _match(vf, tf, [np.random.randn(3, 5) * 2, np.random.randn(3, 5)], dtype,
           make=lambda a: noncontig(a, dtype=dtype))


@pytest.mark.parametrize("name", ["smooth_l1_loss", "huber_loss"])
def test_regression_losses_at_the_kink_and_at_zero(name):
    kw = {"beta": 0.5} if name == "smooth_l1_loss" else {"delta": 0.5}
    x, t = np.array([0.5, -0.5, 0.0, 1.0, 0.2]), np.array([0.0, 0.0, 0.0, 1.0, 0.7])
    _match(lambda a, b: getattr(F, name)(a, b, reduction="sum", **kw),
           lambda a, b: getattr(TF, name)(a, b, reduction="sum", **kw), [x, t])


def test_regression_losses_match_finite_differences():
    x, t = np.random.randn(4, 3) + 0.01, np.random.randn(4, 3)

    def sl1(a, b, beta=0.8):
        d = np.abs(a - b)
        return np.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta).mean()

    def hub(a, b, delta=0.8):
        d = np.abs(a - b)
        return np.where(d < delta, 0.5 * d * d, delta * (d - 0.5 * delta)).sum()
    check_op(lambda a, b: F.smooth_l1_loss(a, b, beta=0.8), sl1, [x, t])
    check_op(lambda a, b: F.huber_loss(a, b, reduction="sum", delta=0.8), hub, [x, t])


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_huber_loss_weight(reduction):
    x, t, w = np.random.randn(4, 5), np.random.randn(4, 5), np.random.rand(4, 5)
    _match(lambda a, b, c: F.huber_loss(a, b, reduction, 0.7, c),
           lambda a, b, c: TF.huber_loss(a, b, reduction, 0.7, c), [x, t, w])
    with pytest.raises(vt.ShapeError, match="weight shape"):
        F.huber_loss(vt.tensor(x), vt.tensor(t), weight=vt.tensor(w[0]))


@pytest.mark.parametrize("name", ["smooth_l1_loss", "huber_loss"])
def test_regression_losses_broadcast_with_a_warning(name):
    x, t = np.random.randn(4, 1), np.random.randn(4)
    with pytest.warns(UserWarning, match=rf"{name}: target size \(4,\) differs from input size \(4, 1\)") as rec:
        got = getattr(F, name)(vt.tensor(x), vt.tensor(t))
    assert rec[0].filename == __file__  # points at the caller
    with pytest.warns(UserWarning):
        ref = getattr(TF, name)(torch.tensor(x), torch.tensor(t))
    assert np.allclose(got.item(), ref.item())


# ---------------------------------------------------------------------------------------------- kl_div
def _log_probs(shape, dim=-1):
    z = np.random.randn(*shape)
    return z - np.log(np.exp(z).sum(axis=dim, keepdims=True))


@pytest.mark.parametrize("dtype", [vt.float32, vt.float64])
@pytest.mark.parametrize("log_target", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS + ["batchmean"])
def test_kl_div_matches_torch(reduction, log_target, dtype):
    x, lt = _log_probs((5, 7)), _log_probs((5, 7))
    t = lt if log_target else np.exp(lt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # both warn for 'mean'
        _match(lambda a, b: F.kl_div(a, b, reduction=reduction, log_target=log_target),
               lambda a, b: TF.kl_div(a, b, reduction=reduction, log_target=log_target), [x, t], dtype)
        _match(lambda a, b: F.kl_div(a, b, reduction=reduction, log_target=log_target),
               lambda a, b: TF.kl_div(a, b, reduction=reduction, log_target=log_target),
               [_log_probs((3, 4, 5)), np.exp(_log_probs((3, 4, 5)))], dtype, make=lambda a: noncontig(a, dtype=dtype))


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # the NaN target gradient at t == 0
def test_kl_div_zero_targets_and_finite_differences():
    x = _log_probs((3, 4))
    t = np.exp(_log_probs((3, 4)))
    t[0, 1] = t[2, 3] = 0.0
    # input gradient -t (0 where t is 0); PyTorch's target gradient at t == 0 is NaN (xlogy's), as here
    vo, to, gs = _run(lambda a, b: F.kl_div(a, b, reduction="sum"), lambda a, b: TF.kl_div(a, b, reduction="sum"),
                      [x, t])
    assert_close(vo, to)
    assert_close(gs[0][0], gs[0][1])
    np.testing.assert_array_equal(np.isnan(gs[1][0].numpy()), np.isnan(gs[1][1]))
    assert np.isnan(gs[1][1][0, 1])
    ok = ~np.isnan(gs[1][1])
    assert_close(gs[1][0].numpy()[ok], gs[1][1][ok])
    tt = np.exp(_log_probs((3, 4)))
    check_op(lambda a, b: F.kl_div(a, b, reduction="batchmean"),
             lambda a, b: (b * (np.log(b) - a)).sum() / 3, [x, tt])


def test_kl_div_mean_warns_and_scalar_batchmean():
    x, t = vt.tensor(_log_probs((2, 3))), vt.tensor(np.exp(_log_probs((2, 3))))
    with pytest.warns(UserWarning, match="batchmean"):
        F.kl_div(x, t)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        F.kl_div(x, t, reduction="batchmean")
    s = F.kl_div(vt.tensor(-0.5), vt.tensor(0.4), reduction="batchmean")
    assert_close(s, TF.kl_div(torch.tensor(-0.5), torch.tensor(0.4), reduction="batchmean").numpy())
    with pytest.raises(ValueError, match="batchmean"):
        F.kl_div(x, t, reduction="avg")


# ---------------------------------------------------------------------------------------------- cosine similarity
@pytest.mark.parametrize("dtype", [vt.float32, vt.float64])
@pytest.mark.parametrize("dim,eps", [(1, 1e-8), (0, 1e-8), (-1, 0.5)])
def test_cosine_similarity_matches_torch(dim, eps, dtype):
    a, b = np.random.randn(4, 5, 3), np.random.randn(4, 5, 3)
    _match(lambda x, y: F.cosine_similarity(x, y, dim, eps), lambda x, y: TF.cosine_similarity(x, y, dim, eps),
           [a, b], dtype)
    _match(lambda x, y: F.cosine_similarity(x, y, dim, eps), lambda x, y: TF.cosine_similarity(x, y, dim, eps),
           [a, b], dtype, make=lambda v: noncontig(v, dtype=dtype))


def test_cosine_similarity_broadcasts_over_dim_and_handles_zero_vectors():
    a, b = np.random.randn(3, 1), np.random.randn(3, 4)  # dim 1 is broadcast: the norm counts it 4 times
    _match(lambda x, y: F.cosine_similarity(x, y), lambda x, y: TF.cosine_similarity(x, y), [a, b])
    z, c = np.zeros((2, 3)), np.random.randn(2, 3)
    z[1] = [1e-9, 0.0, -2e-9]  # below eps: the value is clamped, the gradient is the norm's own
    _match(lambda x, y: F.cosine_similarity(x, y), lambda x, y: TF.cosine_similarity(x, y), [z, c])
    check_op(lambda x, y: F.cosine_similarity(x, y, 1),
             lambda x, y: (x * y).sum(1) / np.sqrt((x * x).sum(1) * (y * y).sum(1)),
             [np.random.randn(3, 4), np.random.randn(3, 4)])


def test_cosine_similarity_errors():
    with pytest.raises(vt.ShapeError, match="do not broadcast"):
        F.cosine_similarity(vt.randn(3, 4), vt.randn(3, 5))
    with pytest.raises(TypeError, match="floating-point"):
        F.cosine_similarity(vt.tensor([[1, 2]]), vt.tensor([[3, 4]]))


# ---------------------------------------------------------------------------------------------- modules, errors
def test_loss_modules_match_torch():
    x, t = np.random.randn(4, 6), np.random.randn(4, 6)
    lp, lq = _log_probs((4, 6)), _log_probs((4, 6))
    cases = [(vt.nn.SmoothL1Loss(beta=0.4), torch.nn.SmoothL1Loss(beta=0.4), [x, t]),
             (vt.nn.SmoothL1Loss(reduction="sum"), torch.nn.SmoothL1Loss(reduction="sum"), [x, t]),
             (vt.nn.HuberLoss(delta=1.7), torch.nn.HuberLoss(delta=1.7), [x, t]),
             (vt.nn.HuberLoss(reduction="none"), torch.nn.HuberLoss(reduction="none"), [x, t]),
             (vt.nn.KLDivLoss(reduction="batchmean"), torch.nn.KLDivLoss(reduction="batchmean"), [lp, np.exp(lq)]),
             (vt.nn.KLDivLoss(reduction="sum", log_target=True), torch.nn.KLDivLoss(reduction="sum", log_target=True),
              [lp, lq]),
             (vt.nn.CosineSimilarity(), torch.nn.CosineSimilarity(), [x, t]),
             (vt.nn.CosineSimilarity(dim=0, eps=1e-3), torch.nn.CosineSimilarity(dim=0, eps=1e-3), [x, t])]
    for vm, tm, arrays in cases:
        _match(vm, tm, arrays)
    assert vt.nn.KLDivLoss(reduction="batchmean").reduction == "batchmean"
    with pytest.raises(ValueError, match="reduction"):
        vt.nn.HuberLoss(reduction="avg")


def test_loss_argument_errors():
    x = vt.randn(3)
    with pytest.raises(ValueError, match="beta must be non-negative"):
        F.smooth_l1_loss(x, x, beta=-1.0)
    with pytest.raises(ValueError, match="delta must be positive"):
        F.huber_loss(x, x, delta=0.0)
    with pytest.raises(NotImplementedError, match="size_average"):
        F.smooth_l1_loss(x, x, size_average=True)
    with pytest.raises(NotImplementedError, match="size_average"):
        F.kl_div(x, x, reduce=False, reduction="batchmean")
