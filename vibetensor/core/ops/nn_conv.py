"""conv2d (im2col through stride tricks + one GEMM per group), max_pool2d, avg_pool2d.

conv2d gathers every kernel tap of the padded input as a strided view (no loops over pixels),
copies it once into a (groups, C/g * kh * kw, N * Ho * Wo) column matrix and runs one matmul per
group (BLAS / cuBLAS). Backward is two ops, ``conv2d_backward_input`` (GEMM, then col2im as
kh * kw strided adds) and ``conv2d_backward_weight`` (im2col again, GEMM), plus a bias sum.
Pools loop over the kh * kw taps with whole-array ops. Unbatched (C, H, W) inputs work too.
"""
from __future__ import annotations

import numpy as np

from ..dispatcher import defop
from ...errors import ShapeError
from ..backend import matmul as _bmatmul
from ._util import V, xp_of
from .nn_common import is_low, needs, pack, positional, require_float, same_dtype, up_cpu


def _pair(opname, v, name):
    if isinstance(v, (tuple, list)):
        if len(v) == 1:
            v = (v[0], v[0])
        if len(v) != 2:
            raise ValueError(f"{opname}: {name} must be an int or a pair of ints, got {tuple(v)}")
        return int(v[0]), int(v[1])
    return int(v), int(v)


def _as_strided(xp, a, shape, strides):
    return xp.lib.stride_tricks.as_strided(a, shape=shape, strides=strides)


def _batched(opname, x):
    if x.ndim not in (3, 4):
        raise ShapeError(f"{opname}: expected a 3-d (C, H, W) or 4-d (N, C, H, W) input, got shape {tuple(x.shape)}")
    return (x[None], True) if x.ndim == 3 else (x, False)


# ---------------------------------------------------------------------------------------------- conv2d

def _conv_geometry(x4, w, stride, padding, dilation, groups):
    """Validated (stride, (top, bottom, left, right) padding, dilation, Ho, Wo)."""
    N, C, H, W = x4.shape
    if w.ndim != 4:
        raise ShapeError(f"conv2d: weight must be 4-d (out_channels, in_channels/groups, kH, kW), got shape "
                         f"{tuple(w.shape)}")
    if not isinstance(groups, int) or groups < 1:
        raise ValueError(f"conv2d: groups must be a positive int, got {groups!r}")
    O, Cg, kh, kw = w.shape
    if C != Cg * groups:
        raise ShapeError(f"conv2d: input has {C} channels but weight of shape {tuple(w.shape)} with groups={groups} "
                         f"expects {Cg * groups} (weight.shape[1] * groups)")
    if O % groups:
        raise ShapeError(f"conv2d: out_channels {O} (weight.shape[0]) must be divisible by groups={groups}")
    sh, sw = _pair("conv2d", stride, "stride")
    dh, dw = _pair("conv2d", dilation, "dilation")
    if min(sh, sw, dh, dw) < 1:
        raise ValueError(f"conv2d: stride {(sh, sw)} and dilation {(dh, dw)} must be positive")
    if isinstance(padding, str):
        if padding == "valid":
            pads = (0, 0, 0, 0)
        elif padding == "same":
            if (sh, sw) != (1, 1):
                raise ValueError("conv2d: padding='same' is not supported for strided convolutions; use stride=1 "
                                 "or explicit padding")
            th, tw = dh * (kh - 1), dw * (kw - 1)  # extra pixel goes bottom/right, as PyTorch
            pads = (th // 2, th - th // 2, tw // 2, tw - tw // 2)
        else:
            raise ValueError(f"conv2d: padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
    else:
        ph, pw = _pair("conv2d", padding, "padding")
        if ph < 0 or pw < 0:
            raise ValueError(f"conv2d: padding must be non-negative, got {(ph, pw)}")
        pads = (ph, ph, pw, pw)
    Ho = (H + pads[0] + pads[1] - dh * (kh - 1) - 1) // sh + 1
    Wo = (W + pads[2] + pads[3] - dw * (kw - 1) - 1) // sw + 1
    if Ho <= 0 or Wo <= 0:
        raise ShapeError(f"conv2d: the padded input ({H + pads[0] + pads[1]}, {W + pads[2] + pads[3]}) is smaller "
                         f"than the dilated kernel ({dh * (kh - 1) + 1}, {dw * (kw - 1) + 1}) for input shape "
                         f"{tuple(x4.shape)} and weight shape {tuple(w.shape)}")
    return (sh, sw), pads, (dh, dw), Ho, Wo


def _pad(xp, x, pads, value=0):
    if not any(pads):
        return x
    return xp.pad(x, ((0, 0), (0, 0), (pads[0], pads[1]), (pads[2], pads[3])), constant_values=value)


def _im2col(x4, kh, kw, stride, pads, dil, Ho, Wo, groups):
    """(groups, C/g * kh * kw, N * Ho * Wo) column matrix of the padded input."""
    xp = xp_of(x4)
    xp_ = xp.ascontiguousarray(_pad(xp, x4, pads))
    N, C = xp_.shape[:2]
    s = xp_.strides
    view = _as_strided(xp, xp_, (C, kh, kw, N, Ho, Wo),
                       (s[1], s[2] * dil[0], s[3] * dil[1], s[0], s[2] * stride[0], s[3] * stride[1]))
    return view.reshape(groups, (C // groups) * kh * kw, N * Ho * Wo)


@positional
@defop("conv2d", save=(0, 1))
def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    x4, unb = _batched("conv2d", input)
    same_dtype("conv2d", input, weight, bias)
    require_float("conv2d", input)
    st, pads, dil, Ho, Wo = _conv_geometry(x4, weight, stride, padding, dilation, groups)
    xp = xp_of(input)
    N = x4.shape[0]
    O, Cg, kh, kw = weight.shape
    xf, wf = up_cpu(x4), up_cpu(weight)
    cols = _im2col(xf, kh, kw, st, pads, dil, Ho, Wo, groups)
    out = _bmatmul(wf.reshape(groups, O // groups, Cg * kh * kw), cols)  # (G, O/G, N*Ho*Wo)
    out = out.reshape(O, N, Ho, Wo).transpose(1, 0, 2, 3)
    if bias is not None:
        out = out + up_cpu(bias).reshape(1, O, 1, 1)
    out = xp.ascontiguousarray(out).astype(input.dtype, copy=False)
    return out[0] if unb else out


@conv2d.def_backward
def _(ctx, g):
    a = ctx.args
    x, w = a[0], a[1]
    nx, nw, nb = needs(ctx, 0, 1, 2)
    gx = V.conv2d_backward_input(g, w, tuple(x.shape), a[3], a[4], a[5], a[6]) if nx else None
    gw = V.conv2d_backward_weight(g, x, tuple(w.shape), a[3], a[4], a[5], a[6]) if nw else None
    gb = None
    if nb:
        gb = V.sum(g, (0, 2, 3) if g.ndim == 4 else (1, 2))
    return pack(ctx, {0: gx, 1: gw, 2: gb})


def _g_mat(g4, groups):
    """Upstream (N, O, Ho, Wo) -> (G, O/G, N*Ho*Wo)."""
    N, O, Ho, Wo = g4.shape
    return g4.transpose(1, 0, 2, 3).reshape(groups, O // groups, N * Ho * Wo)


@defop("conv2d_backward_input")
def conv2d_backward_input(g, weight, input_shape, stride=1, padding=0, dilation=1, groups=1):
    """grad_input of conv2d: GEMM to columns, then col2im (kh * kw strided adds)."""
    xp = xp_of(g)
    shape = tuple(input_shape)
    unb = len(shape) == 3
    x_shape4 = (1,) + shape if unb else shape
    g4 = g[None] if unb else g
    fake = _Shape(x_shape4)
    st, pads, dil, Ho, Wo = _conv_geometry(fake, weight, stride, padding, dilation, groups)
    N, C, H, W = x_shape4
    O, Cg, kh, kw = weight.shape
    gf, wf = up_cpu(g4), up_cpu(weight)
    wm = wf.reshape(groups, O // groups, Cg * kh * kw)
    gcols = _bmatmul(xp.swapaxes(wm, 1, 2), _g_mat(gf, groups))  # (G, Cg*kh*kw, N*Ho*Wo)
    gcols = gcols.reshape(groups, Cg, kh, kw, N, Ho, Wo)
    Hp, Wp = H + pads[0] + pads[1], W + pads[2] + pads[3]
    dx = xp.zeros((N, groups, Cg, Hp, Wp), dtype=np.float32 if is_low(gcols) else gcols.dtype)  # f32 accumulate
    for i in range(kh):
        for j in range(kw):
            h0, w0 = i * dil[0], j * dil[1]
            dx[:, :, :, h0:h0 + st[0] * (Ho - 1) + 1:st[0], w0:w0 + st[1] * (Wo - 1) + 1:st[1]] += \
                gcols[:, :, i, j].transpose(2, 0, 1, 3, 4)
    dx = dx.reshape(N, C, Hp, Wp)[:, :, pads[0]:pads[0] + H, pads[2]:pads[2] + W]
    dx = xp.ascontiguousarray(dx).astype(g.dtype, copy=False)
    return dx[0] if unb else dx


@defop("conv2d_backward_weight")
def conv2d_backward_weight(g, input, weight_shape, stride=1, padding=0, dilation=1, groups=1):
    """grad_weight of conv2d: upstream GEMM against the im2col matrix of the input."""
    xp = xp_of(g)
    x4, unb = _batched("conv2d", input)
    g4 = g[None] if unb else g
    O, Cg, kh, kw = weight_shape
    st, pads, dil, Ho, Wo = _conv_geometry(x4, _Shape(tuple(weight_shape)), stride, padding, dilation, groups)
    cols = _im2col(up_cpu(x4), kh, kw, st, pads, dil, Ho, Wo, groups)
    gw = _bmatmul(_g_mat(up_cpu(g4), groups), xp.swapaxes(cols, 1, 2))  # (G, O/G, Cg*kh*kw)
    return gw.reshape(O, Cg, kh, kw).astype(g.dtype, copy=False)


class _Shape:
    """Just enough of an array (shape, ndim) to reuse the geometry checks."""

    def __init__(self, shape):
        self.shape = tuple(shape)
        self.ndim = len(self.shape)


# ---------------------------------------------------------------------------------------------- pooling

def _pool_dims(opname, H, k, s, p, d, ceil_mode):
    if k <= 0 or s <= 0 or d <= 0:
        raise ValueError(f"{opname}: kernel_size, stride and dilation must be positive, got {k}, {s}, {d}")
    if p < 0 or p > k // 2:
        raise ValueError(f"{opname}: padding {p} should be at most half of the kernel size {k}")
    span = H + 2 * p - d * (k - 1) - 1
    if span < 0:
        raise ShapeError(f"{opname}: input size {H} with padding {p} is smaller than the (dilated) kernel "
                         f"{d * (k - 1) + 1}")
    o = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (o - 1) * s >= H + p:  # the last window must start inside the input or left padding
        o -= 1
    return o


def _pool_setup(opname, x, kernel_size, stride, padding, dilation, ceil_mode):
    x4, unb = _batched(opname, x)
    kh, kw = _pair(opname, kernel_size, "kernel_size")
    sh, sw = _pair(opname, stride if stride is not None and stride != [] and stride != () else (kh, kw), "stride")
    ph, pw = _pair(opname, padding, "padding")
    dh, dw = _pair(opname, dilation, "dilation")
    H, W = x4.shape[2:]
    Ho = _pool_dims(opname, H, kh, sh, ph, dh, ceil_mode)
    Wo = _pool_dims(opname, W, kw, sw, pw, dw, ceil_mode)
    # pad bottom/right far enough for every window (ceil_mode windows may run past the padding)
    pb = max((Ho - 1) * sh + dh * (kh - 1) + 1 - H - ph, 0)
    pr = max((Wo - 1) * sw + dw * (kw - 1) + 1 - W - pw, 0)
    return x4, unb, (kh, kw), (sh, sw), (ph, pb, pw, pr), (dh, dw), Ho, Wo


def _taps(kh, kw, st, dil, Ho, Wo):
    """(tap number, slice into the padded (.., Hp, Wp) array) for every kernel tap."""
    for i in range(kh):
        for j in range(kw):
            h0, w0 = i * dil[0], j * dil[1]
            yield i * kw + j, (Ellipsis, slice(h0, h0 + st[0] * (Ho - 1) + 1, st[0]),
                               slice(w0, w0 + st[1] * (Wo - 1) + 1, st[1]))


def _lowest(dtype):
    return -np.inf if dtype.kind in "fV" else np.iinfo(dtype).min


def _max_taps(x4, k, st, pads, dil, Ho, Wo, want_index=True):
    """(max values, index of the winning tap or None); nan propagates into the values (as PyTorch),
    and the first maximum of a window wins its gradient."""
    xp = xp_of(x4)
    xpad = _pad(xp, x4, pads, _lowest(x4.dtype))
    best = idx = None
    for t, sl in _taps(k[0], k[1], st, dil, Ho, Wo):
        cand = xpad[sl]
        if best is None:
            best = cand.copy()
            if want_index:
                idx = xp.zeros(cand.shape, dtype=np.int64)
            continue
        if want_index:
            xp.copyto(idx, t, where=cand > best)
        xp.maximum(best, cand, out=best)
    return best, idx


@positional
@defop("max_pool2d", save=(0,))
def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    x4, unb, k, st, pads, dil, Ho, Wo = _pool_setup("max_pool2d", input, kernel_size, stride, padding, dilation,
                                                     ceil_mode)
    xp = xp_of(input)
    if x4.size == 0:
        out = xp.zeros(x4.shape[:2] + (Ho, Wo), dtype=input.dtype)
        idx = xp.zeros(out.shape, dtype=np.int64)
    else:
        out, tap = _max_taps(x4, k, st, pads, dil, Ho, Wo, want_index=return_indices)
        if return_indices:  # flat h * W + w position in the unpadded input, as PyTorch
            ti, tj = tap // k[1], tap % k[1]
            h = xp.arange(Ho).reshape(-1, 1) * st[0] - pads[0] + ti * dil[0]
            w = xp.arange(Wo).reshape(1, -1) * st[1] - pads[2] + tj * dil[1]
            idx = h * x4.shape[3] + w
    if unb:
        out = out[0]
        if return_indices:
            idx = idx[0]
    return (out, idx) if return_indices else out


@max_pool2d.def_backward
def _(ctx, g, *rest):
    a = ctx.args
    return V.max_pool2d_backward(g, a[0], a[1], a[2], a[3], a[4], a[5])


@defop("max_pool2d_backward")
def max_pool2d_backward(g, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """grad_input of max_pool2d: each output's gradient goes to its window's (first) maximum."""
    xp = xp_of(g)
    x4, unb, k, st, pads, dil, Ho, Wo = _pool_setup("max_pool2d", input, kernel_size, stride, padding, dilation,
                                                     ceil_mode)
    g4 = g[None] if unb else g
    N, C, H, W = x4.shape
    dx = xp.zeros((N, C, H + pads[0] + pads[1], W + pads[2] + pads[3]), dtype=np.float32 if is_low(g4) else g4.dtype)
    if x4.size:
        _, tap = _max_taps(x4, k, st, pads, dil, Ho, Wo)
        for t, sl in _taps(k[0], k[1], st, dil, Ho, Wo):
            dx[sl] += xp.where(tap == t, g4, 0)
    dx = xp.ascontiguousarray(dx[:, :, pads[0]:pads[0] + H, pads[2]:pads[2] + W]).astype(g.dtype, copy=False)
    return dx[0] if unb else dx


def _avg_divisor(xp, Ho, Wo, k, st, pads, H, W, count_include_pad, divisor_override):
    if divisor_override is not None:
        if divisor_override == 0:
            raise ValueError("avg_pool2d: divisor_override must be non-zero")
        return float(divisor_override)

    def counts(O, kk, s, p, L):
        start = np.arange(O) * s - p
        end = np.minimum(start + kk, L + p)
        if not count_include_pad:
            start, end = np.maximum(start, 0), np.minimum(end, L)
        return (end - start).astype(np.float64)
    div = np.outer(counts(Ho, k[0], st[0], pads[0], H), counts(Wo, k[1], st[1], pads[2], W))
    return xp.asarray(div)


@positional
@defop("avg_pool2d", save=())
def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    x4, unb, k, st, pads, dil, Ho, Wo = _pool_setup("avg_pool2d", input, kernel_size, stride, padding, 1, ceil_mode)
    require_float("avg_pool2d", input)
    xp = xp_of(input)
    xpad = _pad(xp, up_cpu(x4), pads)
    acc = xp.zeros(x4.shape[:2] + (Ho, Wo), dtype=xpad.dtype)
    for _, sl in _taps(k[0], k[1], st, dil, Ho, Wo):
        acc += xpad[sl]
    div = _avg_divisor(xp, Ho, Wo, k, st, pads, x4.shape[2], x4.shape[3], count_include_pad, divisor_override)
    out = (acc / div).astype(input.dtype, copy=False)
    return out[0] if unb else out


@avg_pool2d.def_backward
def _(ctx, g):
    a = ctx.args
    return V.avg_pool2d_backward(g, tuple(a[0].shape), a[1], a[2], a[3], a[4], a[5], a[6])


@defop("avg_pool2d_backward")
def avg_pool2d_backward(g, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None):
    """grad_input of avg_pool2d: each output's gradient / divisor spread over its window."""
    xp = xp_of(g)
    shape = tuple(input_shape)
    fake = _Shape(shape)
    x4, unb, k, st, pads, dil, Ho, Wo = _pool_setup("avg_pool2d", fake if len(shape) == 4 else _Shape((1,) + shape),
                                                     kernel_size, stride, padding, 1, ceil_mode)
    unb = len(shape) == 3
    N, C, H, W = x4.shape
    g4 = up_cpu(g[None] if unb else g)
    div = _avg_divisor(xp, Ho, Wo, k, st, pads, H, W, count_include_pad, divisor_override)
    gd = g4 / div
    dx = xp.zeros((N, C, H + pads[0] + pads[1], W + pads[2] + pads[3]), dtype=gd.dtype)
    for _, sl in _taps(k[0], k[1], st, dil, Ho, Wo):
        dx[sl] += gd
    dx = xp.ascontiguousarray(dx[:, :, pads[0]:pads[0] + H, pads[2]:pads[2] + W]).astype(g.dtype, copy=False)
    return dx[0] if unb else dx
