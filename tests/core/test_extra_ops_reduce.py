"""Extra reductions and elementwise ops (cummax/cummin/logcumsumexp, var_mean, aminmax, nansum, median,
bincount/searchsorted/isin, xlogy/logit/erfinv/signbit, numel, type_as) against PyTorch."""
import math

import numpy as np
import pytest

import vibetensor as vt
from tests.opcheck import to_np64
from tests.core._extra_ops_util import (
    R, FLOATS, INTS, TDT, V, T, close, rand_of, grads_match, torch,
)


# ================================================================== cummax / cummin / logcumsumexp
@pytest.mark.parametrize("name", ["cummax", "cummin"])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_cummax_cummin(name, dim, device):
    a = R(4, 5, 3)
    vs, ts = V(a, device, rg=True), T(a, rg=True)
    vo, to = getattr(vt, name)(vs, dim), getattr(torch, name)(ts, dim)
    close(vo.values, to.values)
    close(vo.indices, to.indices)
    up = R(*a.shape)
    vo.values.backward(V(up, device))
    to.values.backward(T(up))
    close(vs.grad, ts.grad)
    m = getattr(V(a, device), name)(dim)
    close(m[0], to.values)


@pytest.mark.parametrize("name", ["cummax", "cummin"])
def test_cummax_cummin_ties_nan_dtypes(name, device):
    a = np.array([1.0, np.nan, 2.0, np.nan, 5.0, -1.0])
    vo, to = getattr(vt, name)(V(a, device), 0), getattr(torch, name)(T(a), 0)
    close(vo.values, to.values)
    close(vo.indices, to.indices)
    for dt in FLOATS + INTS + [vt.bool]:
        b = np.random.randint(0, 3, size=(3, 8)).astype(np.float64)
        b = b > 0 if dt is vt.bool else b
        vo, to = getattr(vt, name)(V(b, device, dt), 1), getattr(torch, name)(T(b, TDT[dt.name]), 1)
        close(vo.values, to.values, msg=dt.name)
        close(vo.indices, to.indices, msg=dt.name)
    vo = getattr(vt, name)(V(3.0, device), 0)
    assert vo.values.item() == 3.0 and vo.indices.item() == 0


def test_scan_step_path_matches_numpy_accumulate():
    """The log-step scan (the CuPy path) agrees with ufunc.accumulate, on numpy."""
    from vibetensor.core.ops.extra_reduce import _scan, _cum_extreme_indices
    for n in [1, 2, 5, 8, 13]:
        a = np.round(R(3, n, 2) * 2)
        for fn in ["maximum", "minimum", "logaddexp"]:
            np.testing.assert_allclose(_scan(np, fn, a, 1, force_steps=True), getattr(np, fn).accumulate(a, 1),
                                       rtol=1e-13)
        a[0, 0, 0] = np.nan
        for fn in ["maximum", "minimum"]:
            np.testing.assert_array_equal(_cum_extreme_indices("c", fn, a, 1, True),
                                          _cum_extreme_indices("c", fn, a, 1, False))


@pytest.mark.parametrize("dim", [0, 1])
def test_logcumsumexp(dim, device):
    a = R(5, 4) * 3
    a[1, 1] = 40.0
    vs, ts = V(a, device, rg=True), T(a, rg=True)
    vo, to = vt.logcumsumexp(vs, dim), torch.logcumsumexp(ts, dim)
    close(vo, to)
    up = R(*a.shape)  # mixed signs: both halves of the stable backward
    vo.backward(V(up, device))
    to.backward(T(up))
    close(vs.grad, ts.grad, rtol=1e-9)
    close(vs.logcumsumexp(dim), to)
    big = np.array([-np.inf, 0.0, 1000.0, -1000.0, np.inf, 3.0])
    close(vt.logcumsumexp(V(big, device), 0), torch.logcumsumexp(T(big), 0))
    from vibetensor.core.ops.extra_reduce import logcumsumexp as op
    close(op(V(a, device), dim, force_steps=True), to, rtol=1e-12)


def test_logcumsumexp_dtypes_and_errors(device):
    for dt in FLOATS:
        a = R(3, 6)
        close(vt.logcumsumexp(V(a, device, dt), 1), torch.logcumsumexp(T(a, TDT[dt.name]), 1), msg=dt.name)
    with pytest.raises(vt.DTypeError, match="floating-point"):
        vt.logcumsumexp(V([1, 2], device, vt.int64), 0)
    close(vt.logcumsumexp(V(2.0, device), 0), np.array(2.0))


# ================================================================== var_mean / std_mean / aminmax
@pytest.mark.parametrize("name", ["var_mean", "std_mean"])
@pytest.mark.parametrize("kw", [{}, {"dim": 1}, {"dim": (0, 2), "keepdim": True}, {"dim": -1, "correction": 0},
                                {"dim": 1, "unbiased": False}, {"dim": None, "correction": 2}])
def test_var_std_mean(name, kw, device):
    a = R(3, 4, 5)
    vs, ts = V(a, device, rg=True), T(a, rg=True)
    vo, to = getattr(vt, name)(vs, **kw), getattr(torch, name)(ts, **kw)
    assert isinstance(vo, tuple) and len(vo) == 2
    close(vo[0], to[0], rtol=1e-10)
    close(vo[1], to[1], rtol=1e-10)
    u0, u1 = R(*to[0].shape), R(*to[1].shape)
    ((vo[0] * V(u0, device)).sum() + (vo[1] * V(u1, device)).sum()).backward()
    ((to[0] * T(u0)).sum() + (to[1] * T(u1)).sum()).backward()
    close(vs.grad, ts.grad, rtol=1e-9)


def test_var_mean_dtypes(device):
    for dt in FLOATS:
        a = R(4, 6)
        v, m = vt.var_mean(V(a, device, dt), 1)
        tv, tm = torch.var_mean(T(a, TDT[dt.name]), 1)
        close(v, tv, rtol=2e-2 if dt is vt.bfloat16 else None)
        close(m, tm)
    with pytest.raises(vt.DTypeError):
        vt.std_mean(V([1, 2], device, vt.int64))


@pytest.mark.parametrize("kw", [{}, {"dim": 0}, {"dim": -1, "keepdim": True}, {"keepdim": True}])
def test_aminmax(kw, device):
    a = R(4, 5)
    vs, ts = V(a, device, rg=True), T(a, rg=True)
    vo, to = vt.aminmax(vs, **kw), torch.aminmax(ts, **kw)
    close(vo.min, to.min)
    close(vo.max, to.max)
    (vo.min.sum() * 2 + vo.max.sum()).backward()
    (to.min.sum() * 2 + to.max.sum()).backward()
    close(vs.grad, ts.grad)
    for dt in FLOATS + INTS:
        b = rand_of((3, 4), dt)
        vo, to = V(b, device, dt).aminmax(dim=1), torch.aminmax(T(b, TDT[dt.name]), dim=1)
        close(vo[0], to[0])
        close(vo[1], to[1])
    with pytest.raises(IndexError, match="non-zero size"):
        vt.aminmax(V(np.zeros((0, 3)), device), dim=0)


# ================================================================== nansum / nanmean
@pytest.mark.parametrize("name", ["nansum", "nanmean"])
@pytest.mark.parametrize("kw", [{}, {"dim": 1}, {"dim": (0, 1), "keepdim": True}, {"dim": -1}])
def test_nansum_nanmean(name, kw, device):
    a = R(3, 4)
    a[0, 1] = a[2, 2] = a[1, :] = np.nan
    vs, ts = V(a, device, rg=True), T(a, rg=True)
    vo, to = getattr(vt, name)(vs, **kw), getattr(torch, name)(ts, **kw)
    close(vo, to, rtol=1e-12)
    up = R(*to.shape)
    vo.backward(V(up, device))
    to.backward(T(up))
    close(vs.grad, ts.grad, rtol=1e-12)
    close(getattr(V(a, device), name)(**kw), to, rtol=1e-12)


def test_nansum_nanmean_dtypes(device):
    for dt in FLOATS + INTS + [vt.bool]:
        a = rand_of((3, 5), dt)
        if dt.is_floating_point:
            a[1, 1] = np.nan
        close(vt.nansum(V(a, device, dt), 1), torch.nansum(T(a, TDT[dt.name]), 1), msg=dt.name)
        if dt.is_floating_point:
            close(vt.nanmean(V(a, device, dt), 1), torch.nanmean(T(a, TDT[dt.name]), 1), msg=dt.name)
    with pytest.raises(vt.DTypeError, match="nanmean: expected a floating-point"):
        vt.nanmean(V([1, 2], device, vt.int64))
    close(vt.nanmean(V([1, 2], device, vt.int64), dtype=vt.float32), np.array(1.5))


# ================================================================== median
@pytest.mark.parametrize("shape", [(7,), (6,), (3, 4), (1,), (2, 3, 5)])
def test_median_global(shape, device):
    a = np.round(R(*shape) * 2)  # ties: the gradient is shared among the equal elements, as PyTorch
    grads_match(lambda x: vt.median(x), lambda x: torch.median(x), [a], device)
    a[0 if len(shape) == 1 else (0,) * len(shape)] = np.nan
    close(vt.median(V(a, device)), torch.median(T(a)))


@pytest.mark.parametrize("dim,keepdim", [(0, False), (1, True), (-1, False)])
def test_median_dim(dim, keepdim, device):
    a = R(5, 4, 6)
    vs, ts = V(a, device, rg=True), T(a, rg=True)
    vo, to = vt.median(vs, dim, keepdim), torch.median(ts, dim, keepdim)
    close(vo.values, to.values)
    close(vo.indices, to.indices)
    up = R(*to.values.shape)
    vo.values.backward(V(up, device))
    to.values.backward(T(up))
    close(vs.grad, ts.grad)
    close(V(a, device).median(dim=dim, keepdim=keepdim)[0], to.values)


def test_median_ties_nan_dtypes(device):
    a = np.random.randint(0, 3, size=(4, 6)).astype(np.float64)
    a[2, 3] = np.nan
    for dt in FLOATS + INTS:
        b = a if dt.is_floating_point else np.nan_to_num(a, nan=1.0)
        x = V(b, device, dt)
        vo, to = vt.median(x, 1), torch.median(T(b, TDT[dt.name]), 1)
        close(vo.values, to.values, msg=dt.name)
        assert vo.indices.dtype is vt.int64
        picked = to_np64(x.gather(1, vo.indices.unsqueeze(1))).reshape(-1)  # ties: any index holding the value
        np.testing.assert_array_equal(picked, to_np64(vo.values), err_msg=dt.name)
        close(vt.median(x), torch.median(T(b, TDT[dt.name])), msg=dt.name)
    nan_row = vt.median(V(a, device), 1)
    assert nan_row.indices[2].item() == 3
    with pytest.raises(IndexError, match="empty"):
        vt.median(V(np.zeros(0), device))
    with pytest.raises(IndexError, match="non-zero size"):
        vt.median(V(np.zeros((0, 2)), device), 0)


# ================================================================== bincount / searchsorted / isin
def test_bincount(device):
    x = np.random.randint(0, 6, size=20)
    close(vt.bincount(V(x, device, vt.int64)), torch.bincount(torch.from_numpy(x)))
    close(V(x, device, vt.int32).bincount(minlength=10), torch.bincount(torch.from_numpy(x).int(), minlength=10))
    close(vt.bincount(V(np.zeros(0), device, vt.int64)), torch.bincount(torch.zeros(0, dtype=torch.int64)))
    for dt in [vt.float32, vt.float64]:
        w = R(20)
        close(vt.bincount(V(x, device, vt.int64), V(w, device, dt)),
              torch.bincount(torch.from_numpy(x), T(w, TDT[dt.name])), rtol=1e-5)
    w = V(R(20), device, rg=True)
    out = vt.bincount(V(x, device, vt.int64), w, 8)
    up = R(8)
    out.backward(V(up, device))
    close(w.grad, up[x])  # d out[b] / d w[i] = [x[i] == b]
    with pytest.raises(ValueError, match="non-negative, got -1"):
        vt.bincount(V([1, -1], device, vt.int64))
    with pytest.raises(vt.ShapeError, match="1-d"):
        vt.bincount(V([[1]], device, vt.int64))
    with pytest.raises(vt.DTypeError, match="integer"):
        vt.bincount(V([1.0], device))


@pytest.mark.parametrize("right", [False, True])
def test_searchsorted(right, device):
    seq = np.sort(np.round(R(10) * 3))
    vals = np.round(R(3, 4) * 4)
    close(vt.searchsorted(V(seq, device), V(vals, device), right=right),
          torch.searchsorted(T(seq), T(vals), right=right))
    side = "right" if right else "left"
    close(vt.searchsorted(V(seq, device), V(vals, device), side=side),
          torch.searchsorted(T(seq), T(vals), side=side))
    seq2 = np.sort(np.round(R(3, 7) * 3), axis=1)
    close(vt.searchsorted(V(seq2, device), V(vals[:, :2], device), right=right),
          torch.searchsorted(T(seq2), T(vals[:, :2]), right=right))
    close(vt.searchsorted(V(seq, device), 0.5, right=right), torch.searchsorted(T(seq), 0.5, right=right))
    perm = np.random.permutation(10)
    unsorted = seq[perm]
    sorter = np.argsort(unsorted, kind="stable")
    close(vt.searchsorted(V(unsorted, device), V(vals, device), right=right, sorter=V(sorter, device, vt.int64)),
          torch.searchsorted(T(unsorted), T(vals), right=right, sorter=torch.from_numpy(sorter)))
    r = vt.searchsorted(V(seq, device, vt.int64), V(vals, device, vt.int64), out_int32=True, right=right)
    close(r, torch.searchsorted(T(seq, torch.int64), T(vals, torch.int64), out_int32=True, right=right))


def test_searchsorted_errors(device):
    with pytest.raises(vt.ShapeError, match="same leading dims"):
        vt.searchsorted(V(R(3, 4), device), V(R(2, 4), device))
    with pytest.raises(ValueError, match="contradicts"):
        vt.searchsorted(V(R(3), device), V(R(2), device), right=True, side="left")


def test_isin(device):
    a = np.random.randint(0, 10, size=(4, 5))
    b = np.random.randint(0, 10, size=(6,))
    for dt in [vt.int64, vt.int32, vt.float32, vt.float16, vt.bfloat16, vt.uint8]:
        for inv in [False, True]:
            close(vt.isin(V(a, device, dt), V(b, device, dt), invert=inv),
                  torch.isin(T(a, TDT[dt.name]), T(b, TDT[dt.name]), invert=inv))
    close(vt.isin(V(a, device, vt.int64), 3), torch.isin(torch.from_numpy(a), 3))
    close(vt.isin(3, V(b, device, vt.int64)), torch.isin(3, torch.from_numpy(b)))
    close(vt.isin(V(a, device, vt.int64), V(b.reshape(2, 3), device, vt.int64)),
          torch.isin(torch.from_numpy(a), torch.from_numpy(b.reshape(2, 3))))


# ================================================================== xlogy, logit, erfinv, signbit
def test_xlogy(device):
    x, y = R(3, 4), np.abs(R(4)) + 0.1
    x[0, 0] = x[1, 2] = 0.0
    grads_match(lambda a, b: vt.xlogy(a, b), lambda a, b: torch.xlogy(a, b), [x, y], device)
    grads_match(lambda a: a.xlogy(2.5), lambda a: a.xlogy(2.5), [x], device)
    grads_match(lambda b: vt.xlogy(2.0, b), lambda b: torch.xlogy(2.0, b), [y], device)
    grads_match(lambda a: vt.xlogy(a, 0.0), lambda a: torch.xlogy(a, 0.0), [np.abs(x) + 1], device)
    special = np.array([0.0, 0.0, 0.0, 1.0, -1.0, 2.0])
    yy = np.array([0.0, np.nan, -1.0, 0.0, 2.0, np.inf])
    close(vt.xlogy(V(special, device), V(yy, device)), torch.xlogy(T(special), T(yy)))
    for dt in FLOATS + [vt.int64, vt.int32, vt.bool]:
        a, b = rand_of((5,), dt), np.abs(rand_of((5,), dt)) + (0 if dt is vt.bool else 1)
        close(vt.xlogy(V(a, device, dt), V(b, device, dt)), torch.xlogy(T(a, TDT[dt.name]), T(b, TDT[dt.name])),
              msg=dt.name, rtol=1e-5 if dt in (vt.int64, vt.int32, vt.bool) else None)
    z = V(x, device)
    z.xlogy_(V(y, device))
    close(z, torch.xlogy(T(x), T(y)))


@pytest.mark.parametrize("eps", [None, 0.2, 1e-6])
def test_logit(eps, device):
    a = np.random.rand(4, 5) * 0.98 + 0.01
    a[0, 0], a[0, 1] = 0.1, 0.95
    grads_match(lambda x: vt.logit(x, eps), lambda x: torch.logit(x, eps), [a], device)
    grads_match(lambda x: x.logit(eps=eps), lambda x: x.logit(eps=eps), [a], device)
    out = np.array([-0.5, 0.0, 1.0, 1.5])
    close(vt.logit(V(out, device), eps), torch.logit(T(out), eps))
    vs, ts = V(out, device, rg=True), T(out, rg=True)
    vt.logit(vs, eps).sum().backward()
    torch.logit(ts, eps).sum().backward()
    close(vs.grad, ts.grad)
    for dt in FLOATS:
        close(vt.logit(V(a, device, dt), eps), torch.logit(T(a, TDT[dt.name]), eps), msg=dt.name, rtol=2e-2,
              atol=2e-2)
    close(vt.logit(V([0, 1], device, vt.int64)), torch.logit(torch.tensor([0, 1])))
    x = V(a, device)
    x.logit_()
    close(x, torch.logit(T(a)))


def test_erfinv(device):
    a = np.random.rand(3, 7) * 1.98 - 0.99
    grads_match(lambda x: vt.erfinv(x), lambda x: torch.erfinv(x), [a], device, rtol=1e-9)
    grads_match(lambda x: x.erfinv(), lambda x: x.erfinv(), [a[:, :2]], device, rtol=1e-9)
    edge = np.array([-1.0, 1.0, 1.5, -2.0, 0.0, np.nan, 1e-300])
    close(vt.erfinv(V(edge, device)), torch.erfinv(T(edge)))
    for dt in FLOATS:
        close(vt.erfinv(V(a, device, dt)), torch.erfinv(T(a, TDT[dt.name])), msg=dt.name, rtol=2e-2, atol=2e-2)
    close(vt.erfinv(V([0, 1], device, vt.int64)), torch.erfinv(torch.tensor([0, 1])))
    x = V(a, device)
    x.erfinv_()
    close(x, torch.erfinv(T(a)), rtol=1e-12)


def test_signbit(device):
    for dt in FLOATS + INTS + [vt.bool]:
        a = rand_of((3, 5), dt)
        close(vt.signbit(V(a, device, dt)), torch.signbit(T(a, TDT[dt.name])), msg=dt.name)
    special = np.array([-0.0, 0.0, -np.inf, np.inf, -1e-30])
    for dt in FLOATS:
        close(V(special, device, dt).signbit(), torch.signbit(T(special, TDT[dt.name])), msg=dt.name)
    close(vt.signbit(V([-np.nan, np.nan], device)), np.array([True, False]))
    r = vt.signbit(V(R(3), device, rg=True))
    assert r.dtype is vt.bool and not r.requires_grad


# ================================================================== numel, type_as
def test_numel_type_as(device):
    x = V(R(3, 4), device)
    assert vt.numel(x) == 12 and vt.numel(V(2.0, device)) == 1 and vt.numel(V(np.zeros((0, 3)), device)) == 0
    y = x.type_as(V([1], device, vt.int32))
    assert y.dtype is vt.int32 and y.device == x.device
    assert x.type_as(x) is x
    g = V(R(3), device, vt.float32, rg=True)
    out = g.type_as(x)
    assert out.dtype is vt.float64
    out.sum().backward()
    assert g.grad.dtype is vt.float32
    with pytest.raises(TypeError, match="expected a tensor"):
        x.type_as(vt.float32)


def test_functions_and_methods_are_exported():
    names = ("einsum broadcast_to meshgrid diag diag_embed trace repeat_interleave take_along_dim diff hstack vstack "
             "clamp_min clamp_max tril_indices triu_indices cummax cummin logcumsumexp var_mean std_mean aminmax "
             "nansum nanmean median bincount searchsorted isin xlogy logit erfinv signbit numel").split()
    for n in names:
        assert callable(getattr(vt, n)), n
    for n in ("broadcast_to diag diag_embed trace repeat_interleave take_along_dim diff clamp_min clamp_max cummax "
              "cummin logcumsumexp aminmax nansum nanmean median bincount xlogy logit erfinv signbit type_as "
              "clamp_min_ clamp_max_ xlogy_ logit_ erfinv_").split():
        assert callable(getattr(vt.Tensor, n)), n
    assert math.isfinite(vt.trace(vt.eye(3)).item())
