"""conv2d, max_pool2d, avg_pool2d: numpy float64 reference (direct loops over kernel taps), finite
differences, PyTorch (stride / padding / dilation / groups / ceil_mode / count_include_pad), dtypes,
unbatched and empty inputs, errors."""
import numpy as np
import pytest

import vibetensor as vt
from tests.opcheck import assert_close, check_op, noncontig, mk

torch = pytest.importorskip("torch")
F = torch.nn.functional




def np_conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """Direct reference: a sum over kernel taps of strided input slices (independent of im2col)."""
    s = (stride, stride) if isinstance(stride, int) else stride
    p = (padding, padding) if isinstance(padding, int) else padding
    d = (dilation, dilation) if isinstance(dilation, int) else dilation
    N, C, H, W = x.shape
    O, Cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))
    Ho = (H + 2 * p[0] - d[0] * (kh - 1) - 1) // s[0] + 1
    Wo = (W + 2 * p[1] - d[1] * (kw - 1) - 1) // s[1] + 1
    out = np.zeros((N, O, Ho, Wo))
    og = O // groups
    for g in range(groups):
        xs = xp[:, g * Cg:(g + 1) * Cg]
        for i in range(kh):
            for j in range(kw):
                sl = xs[:, :, i * d[0]:i * d[0] + s[0] * (Ho - 1) + 1:s[0], j * d[1]:j * d[1] + s[1] * (Wo - 1) + 1:s[1]]
                out[:, g * og:(g + 1) * og] += np.einsum("nchw,oc->nohw", sl, w[g * og:(g + 1) * og, :, i, j])
    return out + (b.reshape(1, -1, 1, 1) if b is not None else 0)


CONV_CASES = [dict(), dict(stride=2, padding=1), dict(dilation=2, padding=(1, 2)), dict(groups=2, stride=(2, 1)),
              dict(groups=4), dict(padding="same", dilation=2), dict(padding="valid"), dict(stride=3, padding=2)]


@pytest.mark.parametrize("kw", CONV_CASES, ids=str)
def test_conv2d_matches_torch(kw, device):
    groups = kw.get("groups", 1)
    x, w, b = np.random.randn(2, 4, 7, 6), np.random.randn(4, 4 // groups, 3, 2), np.random.randn(4)
    vs = [mk(a, device, rg=True) for a in (x, w, b)]
    ts = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]
    out, ref = vt.conv2d(*vs, **kw), F.conv2d(*ts, **kw)
    g = np.random.randn(*ref.shape)
    out.backward(mk(g, device))
    ref.backward(torch.tensor(g))
    assert_close(out, ref.detach().numpy())
    for a, t in zip(vs, ts):
        assert_close(a.grad, t.grad.numpy())


def test_conv2d_grads_fd(device):
    r = np.random.randn
    check_op(lambda x, w, b: vt.conv2d(x, w, b, stride=2, padding=1),
             lambda x, w, b: np_conv2d(x, w, b, stride=2, padding=1), [r(1, 2, 5, 4), r(3, 2, 3, 3), r(3)],
             device=device)
    check_op(lambda x, w: vt.conv2d(x, w, dilation=(2, 1), groups=2),
             lambda x, w: np_conv2d(x, w, dilation=(2, 1), groups=2), [r(1, 4, 5, 3), r(2, 2, 2, 2)], device=device)
    check_op(lambda x, w: vt.conv2d(x, w, padding=1), lambda x, w: np_conv2d(x, w, padding=1),
             [r(2, 2, 3, 4), r(2, 2, 3, 3)], device=device, make=lambda a: noncontig(a, device))


def test_conv2d_unbatched_and_empty(device):
    x, w = np.random.randn(3, 5, 5), np.random.randn(2, 3, 3, 3)
    vx = mk(x, device, rg=True)
    out = vt.conv2d(vx, mk(w, device), padding=1)
    assert_close(out, np_conv2d(x[None], w, padding=1)[0])
    out.sum().backward()
    assert tuple(vx.grad.shape) == (3, 5, 5)
    e = mk(np.zeros((0, 3, 5, 5)), device, rg=True)
    oe = vt.conv2d(e, mk(w, device), padding=1)
    assert tuple(oe.shape) == (0, 2, 5, 5)
    oe.sum().backward()
    assert tuple(e.grad.shape) == (0, 3, 5, 5)


@pytest.mark.parametrize("dtype", [vt.float16, vt.bfloat16, vt.float32])
def test_conv2d_dtypes(dtype, device):
    x, w, b = (mk(a, device, dtype, rg=True) for a in (np.random.randn(2, 3, 6, 6), np.random.randn(4, 3, 3, 3),
                                                         np.random.randn(4)))
    out = vt.conv2d(x, w, b, padding=1)
    assert out.dtype is dtype
    f = [t.detach().to(vt.float64).cpu().numpy() for t in (x, w, b)]
    assert_close(out, np_conv2d(*f, padding=1), dtype=dtype, atol=0.1 if dtype.itemsize == 2 else None)
    out.sum().backward()
    assert x.grad.dtype is dtype and w.grad.dtype is dtype and b.grad.dtype is dtype
    tx, tw = torch.tensor(f[0], requires_grad=True), torch.tensor(f[1], requires_grad=True)
    F.conv2d(tx, tw, torch.tensor(f[2]), padding=1).sum().backward()
    tol = dict(rtol=5e-2, atol=0.5) if dtype.itemsize == 2 else {}
    assert_close(w.grad, tw.grad.numpy(), dtype=dtype, **tol)
    assert_close(x.grad, tx.grad.numpy(), dtype=dtype, **tol)


def test_conv2d_errors(device):
    x = mk(np.zeros((1, 3, 5, 5)), device)
    with pytest.raises(vt.ShapeError, match=r"input has 3 channels but weight of shape \(2, 2, 3, 3\)"):
        vt.conv2d(x, mk(np.zeros((2, 2, 3, 3)), device))
    with pytest.raises(vt.ShapeError, match="divisible by groups"):
        vt.conv2d(x, mk(np.zeros((2, 1, 3, 3)), device), groups=3)
    with pytest.raises(ValueError, match="strided"):
        vt.conv2d(x, mk(np.zeros((2, 3, 3, 3)), device), stride=2, padding="same")
    with pytest.raises(vt.ShapeError, match="smaller than the dilated kernel"):
        vt.conv2d(x, mk(np.zeros((2, 3, 7, 7)), device))
    with pytest.raises(vt.ShapeError, match="3-d.*4-d"):
        vt.conv2d(mk(np.zeros((5, 5)), device), mk(np.zeros((2, 3, 3, 3)), device))


# ---------------------------------------------------------------------------------------------- pooling

MAX_CASES = [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=(3, 2), stride=2,
             ceil_mode=True), dict(kernel_size=2, dilation=2, stride=1), dict(kernel_size=3, stride=1, padding=1)]


@pytest.mark.parametrize("kw", MAX_CASES, ids=str)
def test_max_pool2d_matches_torch(kw, device):
    x = np.random.randn(2, 3, 7, 6)
    vx, tx = mk(x, device, rg=True), torch.tensor(x, requires_grad=True)
    out, ref = vt.max_pool2d(vx, **kw), F.max_pool2d(tx, **kw)
    g = np.random.randn(*ref.shape)
    out.backward(mk(g, device))
    ref.backward(torch.tensor(g))
    assert_close(out, ref.detach().numpy())
    assert_close(vx.grad, tx.grad.numpy())
    vo, vi = vt.max_pool2d(mk(x, device), return_indices=True, **kw)
    _, ti = F.max_pool2d(torch.tensor(x), return_indices=True, **kw)
    np.testing.assert_array_equal(vi.cpu().numpy(), ti.numpy())


def test_max_pool2d_ties_nan_and_dtypes(device):
    x = np.zeros((1, 1, 2, 2))  # all tied: the first element wins the gradient, as PyTorch
    vx = mk(x, device, rg=True)
    vt.max_pool2d(vx, 2).sum().backward()
    np.testing.assert_array_equal(vx.grad.cpu().numpy(), [[[[1, 0], [0, 0]]]])
    xn = np.array([[[[1.0, np.nan], [3.0, 2.0]]]])
    assert np.isnan(vt.max_pool2d(mk(xn, device), 2).item())
    for dtype in (vt.float16, vt.bfloat16, vt.float32):
        x = mk(np.random.randn(2, 2, 6, 6), device, dtype)
        out = vt.max_pool2d(x, 3, 2, 1)
        assert out.dtype is dtype
        assert_close(out, F.max_pool2d(torch.tensor(x.to(vt.float64).cpu().numpy()), 3, 2, 1).numpy(), dtype=dtype)
    xi = vt.tensor(np.random.randint(-50, 50, (1, 2, 4, 4)), device=device)
    np.testing.assert_array_equal(vt.max_pool2d(xi, 2).cpu().numpy(),
                                  F.max_pool2d(torch.tensor(xi.cpu().numpy()).double(), 2).long().numpy())


AVG_CASES = [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
             dict(kernel_size=3, stride=2, padding=1, count_include_pad=False),
             dict(kernel_size=(3, 2), stride=2, ceil_mode=True, padding=1),
             dict(kernel_size=3, stride=2, ceil_mode=True, count_include_pad=False, padding=1),
             dict(kernel_size=2, divisor_override=3)]


@pytest.mark.parametrize("kw", AVG_CASES, ids=str)
def test_avg_pool2d_matches_torch(kw, device):
    x = np.random.randn(2, 3, 7, 6)
    vx, tx = mk(x, device, rg=True), torch.tensor(x, requires_grad=True)
    out, ref = vt.avg_pool2d(vx, **kw), F.avg_pool2d(tx, **kw)
    g = np.random.randn(*ref.shape)
    out.backward(mk(g, device))
    ref.backward(torch.tensor(g))
    assert_close(out, ref.detach().numpy())
    assert_close(vx.grad, tx.grad.numpy())


def test_pools_fd_unbatched_empty_errors(device):
    x = np.random.randn(2, 5, 5)
    check_op(lambda a: vt.avg_pool2d(a, 3, 2, 1), lambda a: F.avg_pool2d(torch.tensor(a), 3, 2, 1).numpy(), [x],
             device=device)
    check_op(lambda a: vt.max_pool2d(a, 2, 1), lambda a: F.max_pool2d(torch.tensor(a), 2, 1).numpy(), [x],
             device=device, make=lambda a: noncontig(a, device))
    for op in (vt.max_pool2d, vt.avg_pool2d):
        e = mk(np.zeros((0, 2, 4, 4)), device)
        assert tuple(op(e, 2).shape) == (0, 2, 2, 2)
    with pytest.raises(ValueError, match="at most half"):
        vt.max_pool2d(mk(np.zeros((1, 1, 4, 4)), device), 2, padding=2)
    with pytest.raises(vt.ShapeError, match="smaller than"):
        vt.avg_pool2d(mk(np.zeros((1, 1, 2, 2)), device), 3)
