"""cross_entropy, nll_loss, mse_loss, binary_cross_entropy(_with_logits): numpy float64 reference,
finite differences, PyTorch (label smoothing, ignore_index, weights, reductions), dtypes, errors."""
import numpy as np
import pytest

import vibetensor as vt
from tests.opcheck import assert_close, check_op, noncontig, mk

torch = pytest.importorskip("torch")
F = torch.nn.functional

REDUCTIONS = ["mean", "sum", "none"]




def np_log_softmax(x, d):
    m = x.max(axis=d, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=d, keepdims=True))


def np_cross_entropy(x, t, w=None, ignore_index=-100, reduction="mean", ls=0.0):
    """Independent float64 reference for class-index targets (N, C) / (N, C, d...)."""
    C = x.shape[1]
    logp = np_log_softmax(x, 1)
    lp = np.moveaxis(logp, 1, -1).reshape(-1, C)
    tf = t.reshape(-1)
    w = np.ones(C) if w is None else w
    valid = tf != ignore_index
    ts = np.where(valid, tf, 0)
    wt = w[ts] * valid
    nll = -wt * lp[np.arange(len(tf)), ts]
    smooth = -(lp * w).sum(-1) * valid
    loss = (1 - ls) * nll + ls / C * smooth
    if reduction == "none":
        return loss.reshape(t.shape)
    return loss.sum() if reduction == "sum" else loss.sum() / wt.sum()


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("ls", [0.0, 0.25])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_matches_torch(reduction, ls, weighted, device):
    x = np.random.randn(6, 5)
    t = np.random.randint(0, 5, 6)
    t[2] = -100
    w = np.random.rand(5) + 0.5 if weighted else None
    vx = mk(x, device, rg=True)
    vw = mk(w, device) if weighted else None
    out = vt.cross_entropy(vx, vt.tensor(t, device=device), weight=vw, reduction=reduction, label_smoothing=ls)
    tx = torch.tensor(x, requires_grad=True)
    ref = F.cross_entropy(tx, torch.tensor(t), weight=None if w is None else torch.tensor(w), reduction=reduction,
                          label_smoothing=ls)
    g = np.random.randn(*ref.shape)
    out.backward(mk(g, device))
    ref.backward(torch.tensor(g, dtype=torch.float64))
    assert_close(out, ref.detach().numpy())
    assert_close(out, np_cross_entropy(x, t, w, -100, reduction, ls))
    assert_close(vx.grad, tx.grad.numpy())


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_spatial_and_ignore_index(reduction, device):
    x = np.random.randn(2, 4, 3, 2)
    t = np.random.randint(0, 4, (2, 3, 2))
    t[0, 1, 1] = 1
    ii = 1  # a real class used as ignore_index
    ref_fn = lambda a: np_cross_entropy(a, t, None, ii, reduction, 0.1)  # noqa: E731
    tt = vt.tensor(t, device=device)
    check_op(lambda a: vt.cross_entropy(a, tt, ignore_index=ii, reduction=reduction, label_smoothing=0.1),
             ref_fn, [x], device=device)
    tx = torch.tensor(x)
    ref = F.cross_entropy(tx, torch.tensor(t), ignore_index=ii, reduction=reduction, label_smoothing=0.1)
    assert_close(vt.cross_entropy(mk(x, device), tt, ignore_index=ii, reduction=reduction, label_smoothing=0.1),
                 ref.numpy())


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_probability_targets(reduction, device):
    x, p, w = np.random.randn(4, 5, 2), np.random.rand(4, 5, 2), np.random.rand(5) + 0.5
    vx, vp = mk(x, device, rg=True), mk(p, device, rg=True)
    out = vt.cross_entropy(vx, vp, weight=mk(w, device), reduction=reduction, label_smoothing=0.2)
    tx, tp = torch.tensor(x, requires_grad=True), torch.tensor(p, requires_grad=True)
    ref = F.cross_entropy(tx, tp, weight=torch.tensor(w), reduction=reduction, label_smoothing=0.2)
    g = np.random.randn(*ref.shape)
    out.backward(mk(g, device))
    ref.backward(torch.tensor(g, dtype=torch.float64))
    assert_close(out, ref.detach().numpy())
    assert_close(vx.grad, tx.grad.numpy())
    assert_close(vp.grad, tp.grad.numpy())


def test_cross_entropy_unbatched_noncontiguous_and_stable(device):
    x = np.random.randn(5)
    out = vt.cross_entropy(mk(x, device), vt.tensor(3, device=device))
    assert_close(out, F.cross_entropy(torch.tensor(x), torch.tensor(3)).numpy())
    x2 = np.random.randn(4, 3)
    t2 = vt.tensor([0, 2, 1, 2], device=device)
    check_op(lambda a: vt.cross_entropy(a, t2), lambda a: np_cross_entropy(a, np.array([0, 2, 1, 2])), [x2],
             device=device, make=lambda a: noncontig(a, device))
    big = mk(np.array([[1000.0, -1000.0, 0.0]]), device)
    assert_close(vt.cross_entropy(big, vt.tensor([1], device=device)), np.array(2000.0))


@pytest.mark.parametrize("dtype", [vt.float16, vt.bfloat16, vt.float32])
def test_cross_entropy_low_precision(dtype, device):
    x = mk(np.random.randn(8, 11) * 4, device, dtype, rg=True)
    t = np.random.randint(0, 11, 8)
    out = vt.cross_entropy(x, vt.tensor(t, device=device), label_smoothing=0.1)
    assert out.dtype is dtype
    x64 = x.detach().to(vt.float64).cpu().numpy()
    assert_close(out, np_cross_entropy(x64, t, ls=0.1), dtype=dtype)
    out.backward()
    assert x.grad.dtype is dtype
    tx = torch.tensor(x64, requires_grad=True)
    F.cross_entropy(tx, torch.tensor(t), label_smoothing=0.1).backward()
    assert_close(x.grad, tx.grad.numpy(), dtype=dtype)


def test_cross_entropy_all_ignored_and_empty(device):
    x = mk(np.random.randn(3, 4), device)
    t = vt.tensor([-100, -100, -100], device=device)
    assert np.isnan(vt.cross_entropy(x, t).item())
    assert vt.cross_entropy(x, t, reduction="sum").item() == 0.0
    e = vt.cross_entropy(mk(np.zeros((0, 4)), device), vt.tensor(np.zeros(0, dtype=np.int64), device=device),
                         reduction="none")
    assert tuple(e.shape) == (0,)


def test_cross_entropy_errors(device):
    x = mk(np.random.randn(3, 4), device)
    with pytest.raises(IndexError, match="target 4 is out of bounds for 4 classes"):
        vt.cross_entropy(x, vt.tensor([0, 4, 1], device=device)).item()  # CUDA: raised at the sync
    with pytest.raises(IndexError, match="target -3 is out of bounds"):
        vt.cross_entropy(x, vt.tensor([0, -3, 1], device=device)).item()
    with pytest.raises(vt.ShapeError, match=r"targets of shape \(3,\), got \(2,\)"):
        vt.cross_entropy(x, vt.tensor([0, 1], device=device))
    with pytest.raises(vt.ShapeError, match=r"weight must have shape \(4,\)"):
        vt.cross_entropy(x, vt.tensor([0, 1, 2], device=device), weight=mk(np.ones(3), device))
    with pytest.raises(ValueError, match="reduction"):
        vt.cross_entropy(x, vt.tensor([0, 1, 2], device=device), reduction="avg")
    w = mk(np.ones(4), device, rg=True)  # class weights get no gradient (as PyTorch): say so
    loss = vt.cross_entropy(mk(np.random.randn(3, 4), device, rg=True), vt.tensor([0, 1, 2], device=device), w)
    with pytest.raises(NotImplementedError, match="with respect to weight"):
        loss.backward()


# ---------------------------------------------------------------------------------------------- nll

@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_loss_matches_torch(reduction, device):
    x = np_log_softmax(np.random.randn(5, 4, 2), 1)
    t = np.random.randint(0, 4, (5, 2))
    t[1, 0] = 2
    w = np.random.rand(4) + 0.5
    vx = mk(x, device, rg=True)
    out = vt.nll_loss(vx, vt.tensor(t, device=device), mk(w, device), ignore_index=2, reduction=reduction)
    tx = torch.tensor(x, requires_grad=True)
    ref = F.nll_loss(tx, torch.tensor(t), torch.tensor(w), ignore_index=2, reduction=reduction)
    g = np.random.randn(*ref.shape)
    out.backward(mk(g, device))
    ref.backward(torch.tensor(g, dtype=torch.float64))
    assert_close(out, ref.detach().numpy())
    assert_close(vx.grad, tx.grad.numpy())


def test_nll_loss_grad_fd_and_errors(device):
    t = np.array([1, 0, 3])
    tt = vt.tensor(t, device=device)
    check_op(lambda a: vt.nll_loss(a, tt), lambda a: -a[np.arange(3), t].mean(), [np.random.randn(3, 4)],
             device=device)
    with pytest.raises(IndexError, match="target 9 is out of bounds for 4 classes"):
        vt.nll_loss(mk(np.zeros((3, 4)), device), vt.tensor([1, 9, 0], device=device)).item()
    with pytest.raises(vt.DTypeError, match="class indices"):
        vt.nll_loss(mk(np.zeros((3, 4)), device), mk(np.zeros((3, 4)), device))


# ---------------------------------------------------------------------------------------------- mse / bce

@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_loss(reduction, device):
    red = {"mean": np.mean, "sum": np.sum, "none": lambda a: a}[reduction]
    check_op(lambda a, b: vt.mse_loss(a, b, reduction=reduction), lambda a, b: red((a - b) ** 2),
             [np.random.randn(3, 4), np.random.randn(3, 4)], device=device)
    check_op(lambda a, b: vt.mse_loss(a, b, reduction=reduction), lambda a, b: red((a - b) ** 2),
             [np.random.randn(3, 4), np.random.randn(4)], device=device)  # broadcast target


def test_mse_loss_dtypes_and_legacy_args(device):
    for dtype in (vt.float16, vt.bfloat16, vt.float32):
        a, b = mk(np.random.randn(5), device, dtype), mk(np.random.randn(5), device, dtype)
        out = vt.mse_loss(a, b)
        assert out.dtype is dtype
        af, bf = a.to(vt.float64).cpu().numpy(), b.to(vt.float64).cpu().numpy()
        assert_close(out, np.mean((af - bf) ** 2), dtype=dtype)
    a, b = mk(np.random.randn(5), device), mk(np.random.randn(5), device)
    assert_close(vt.mse_loss(a, b, size_average=False), np.sum((a.cpu().numpy() - b.cpu().numpy()) ** 2))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_with_logits_matches_torch(reduction, device):
    x, t, w, pw = np.random.randn(4, 3) * 3, np.random.rand(4, 3), np.random.rand(3), np.random.rand(3) + 0.5
    for use_pw in (False, True):
        vx, vt_ = mk(x, device, rg=True), mk(t, device, rg=True)
        out = vt.binary_cross_entropy_with_logits(vx, vt_, weight=mk(w, device), reduction=reduction,
                                                  pos_weight=mk(pw, device) if use_pw else None)
        tx, tt = torch.tensor(x, requires_grad=True), torch.tensor(t, requires_grad=True)
        ref = F.binary_cross_entropy_with_logits(tx, tt, weight=torch.tensor(w), reduction=reduction,
                                                 pos_weight=torch.tensor(pw) if use_pw else None)
        g = np.random.randn(*ref.shape)
        out.backward(mk(g, device))
        ref.backward(torch.tensor(g, dtype=torch.float64))
        assert_close(out, ref.detach().numpy())
        assert_close(vx.grad, tx.grad.numpy())
        assert_close(vt_.grad, tt.grad.numpy())


def test_bce_and_extreme_logits(device):
    x, t = np.random.rand(3, 4) * 0.9 + 0.05, np.random.rand(3, 4)
    check_op(vt.binary_cross_entropy, lambda a, b: np.mean(-(b * np.log(a) + (1 - b) * np.log(1 - a))), [x, t],
             device=device)
    big = vt.binary_cross_entropy_with_logits(mk(np.array([800.0, -800.0]), device), mk(np.array([0.0, 1.0]), device),
                                              reduction="none")
    assert_close(big, np.array([800.0, 800.0]))
    with pytest.raises(ValueError, match="between 0 and 1"):
        vt.binary_cross_entropy(mk(np.array([1.5]), device), mk(np.array([1.0]), device))
    with pytest.raises(vt.ShapeError, match="same as input size"):
        vt.binary_cross_entropy_with_logits(mk(np.zeros(3), device), mk(np.zeros(2), device))


def test_bce_target_outside_zero_one_is_refused():
    F = vt.nn.functional
    with pytest.raises(ValueError, match="all elements of target should be between 0 and 1"):
        F.binary_cross_entropy(vt.tensor([0.5, 0.2]), vt.tensor([2.0, 0.0]))
    with pytest.raises(ValueError, match="all elements of input should be between 0 and 1"):
        F.binary_cross_entropy(vt.tensor([1.5, 0.2]), vt.tensor([2.0, 0.0]))
    soft = F.binary_cross_entropy(vt.tensor([0.5, 0.2]), vt.tensor([0.3, 1.0]))
    ref = torch.nn.functional.binary_cross_entropy(torch.tensor([0.5, 0.2]), torch.tensor([0.3, 1.0]))
    assert abs(soft.item() - ref.item()) < 1e-6


@pytest.mark.parametrize("name", ["mse_loss", "l1_loss"])
def test_regression_losses_warn_when_input_and_target_broadcast(name):
    x, t = np.random.RandomState(0).randn(4, 1), np.random.RandomState(1).randn(4)
    with pytest.warns(UserWarning, match=rf"{name}: target size \(4,\) differs from input size \(4, 1\)"):
        got = getattr(vt.nn.functional, name)(vt.tensor(x), vt.tensor(t))
    with pytest.warns(UserWarning):
        ref = getattr(torch.nn.functional, name)(torch.tensor(x), torch.tensor(t))
    assert np.allclose(got.item(), ref.item())
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        getattr(vt.nn.functional, name)(vt.tensor(x), vt.tensor(x))  # same shapes: no warning
