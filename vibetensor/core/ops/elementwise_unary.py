"""Unary math and activations. Float-only ops promote integers/bool to the default float
(``promote="float"``); float16/bfloat16 are computed in float32 and rounded back (``f32``)."""
from __future__ import annotations

import math

import numpy as np

from ..dispatcher import Keep, defop
from ..tensor import Tensor
from ._util import V, xp_of
from .elementwise_util import f32, zeros_for
from ...errors import DTypeError

_LN2 = math.log(2.0)
_LN10 = math.log(10.0)
_SQRT1_2 = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
_K_TANH = math.sqrt(2.0 / math.pi)


def _unary(name, kernel, grad=None, *, save_in=True, save_out=False, promote="float"):
    """Register ``vt::name`` from a kernel ``(a) -> array`` and a backward ``(g, a, out) -> grad``."""
    kernel.__name__ = name
    op = defop(name, save=(0,) if save_in else (), save_out=save_out, promote=promote)(f32(kernel))
    if grad is not None:
        op.def_backward(lambda ctx, g: grad(g, ctx.args[0], ctx.out))
    return op


def _x(a):
    return xp_of(a)


def _no_bool(name, a):
    if a.dtype.kind == "b":
        raise DTypeError(f"{name}: not supported for bool tensors; convert with .int() or .float() first")


# ------------------------------------------------------------------ exponentials and logarithms
exp = _unary("exp", lambda a: _x(a).exp(a), lambda g, a, o: g * o, save_in=False, save_out=True)
exp2 = _unary("exp2", lambda a: _x(a).exp2(a), lambda g, a, o: g * o * _LN2, save_in=False, save_out=True)
expm1 = _unary("expm1", lambda a: _x(a).expm1(a), lambda g, a, o: g * (o + 1), save_in=False, save_out=True)
log = _unary("log", lambda a: _x(a).log(a), lambda g, a, o: g / a)
log2 = _unary("log2", lambda a: _x(a).log2(a), lambda g, a, o: g / (a * _LN2))
log10 = _unary("log10", lambda a: _x(a).log10(a), lambda g, a, o: g / (a * _LN10))
log1p = _unary("log1p", lambda a: _x(a).log1p(a), lambda g, a, o: g / (a + 1))
sqrt = _unary("sqrt", lambda a: _x(a).sqrt(a), lambda g, a, o: g / (o * 2), save_in=False, save_out=True)
rsqrt = _unary("rsqrt", lambda a: 1 / _x(a).sqrt(a), lambda g, a, o: g * (o * o * o) * -0.5,
               save_in=False, save_out=True)
reciprocal = _unary("reciprocal", lambda a: 1 / a, lambda g, a, o: -g * o * o, save_in=False, save_out=True)

# ------------------------------------------------------------------ trigonometric and hyperbolic
sin = _unary("sin", lambda a: _x(a).sin(a), lambda g, a, o: g * V.cos(a))
cos = _unary("cos", lambda a: _x(a).cos(a), lambda g, a, o: -g * V.sin(a))
tan = _unary("tan", lambda a: _x(a).tan(a), lambda g, a, o: g * (o * o + 1), save_in=False, save_out=True)
asin = _unary("asin", lambda a: _x(a).arcsin(a), lambda g, a, o: g * V.rsqrt(1 - a * a))
acos = _unary("acos", lambda a: _x(a).arccos(a), lambda g, a, o: -g * V.rsqrt(1 - a * a))
atan = _unary("atan", lambda a: _x(a).arctan(a), lambda g, a, o: g / (a * a + 1))
sinh = _unary("sinh", lambda a: _x(a).sinh(a), lambda g, a, o: g * V.cosh(a))
cosh = _unary("cosh", lambda a: _x(a).cosh(a), lambda g, a, o: g * V.sinh(a))
tanh = _unary("tanh", lambda a: _x(a).tanh(a), lambda g, a, o: g * (1 - o * o), save_in=False, save_out=True)
arcsin, arccos, arctan = asin, acos, atan


# ------------------------------------------------------------------ erf (fdlibm's rational approximations)
# Coefficients from fdlibm s_erf.c: "Copyright (C) 1993 by Sun Microsystems, Inc. All rights reserved.
# Developed at SunSoft, a Sun Microsystems, Inc. business. Permission to use, copy, modify, and
# distribute this software is freely granted, provided that this notice is preserved."
_ERX = 8.45062911510467529297e-01
_PP = (1.28379167095512558561e-01, -3.25042107247001499370e-01, -2.84817495755985104766e-02,
       -5.77027029648944159157e-03, -2.37630166566501626084e-05)
_QQ = (1.0, 3.97917223959155352819e-01, 6.50222499887672944485e-02, 5.08130628187576562776e-03,
       1.32494738004321644526e-04, -3.96022827877536812320e-06)
_PA = (-2.36211856075265944077e-03, 4.14856118683748331666e-01, -3.72207876035701323847e-01,
       3.18346619901161753674e-01, -1.10894694282396677476e-01, 3.54783043256182359371e-02,
       -2.16637559486879084300e-03)
_QA = (1.0, 1.06420880400844228286e-01, 5.40397917702171048937e-01, 7.18286544141962662868e-02,
       1.26171219808761642112e-01, 1.36370839120290507362e-02, 1.19844998467991074170e-02)
_RA = (-9.86494403484714822705e-03, -6.93858572707181764372e-01, -1.05586262253232909814e+01,
       -6.23753324503260060396e+01, -1.62396669462573470355e+02, -1.84605092906711035994e+02,
       -8.12874355063065934246e+01, -9.81432934416914548592e+00)
_SA = (1.0, 1.96512716674392571292e+01, 1.37657754143519042600e+02, 4.34565877475229228821e+02,
       6.45387271733267880336e+02, 4.29008140027567833386e+02, 1.08635005541779435134e+02,
       6.57024977031928170135e+00, -6.04244152148580987438e-02)
_RB = (-9.86494292470009928597e-03, -7.99283237680523006574e-01, -1.77579549177547519889e+01,
       -1.60636384855821916062e+02, -6.37566443368389627722e+02, -1.02509513161107724954e+03,
       -4.83519191608651397019e+02)
_SB = (1.0, 3.03380607434824582924e+01, 3.25792512996573918826e+02, 1.53672958608443695994e+03,
       3.19985821950859553908e+03, 2.55305040643316442583e+03, 4.74528541206955367215e+02,
       -2.24409524465858183362e+01)


def _horner(z, coeffs):
    """Polynomial in z (coefficients lowest first), evaluated in place to spare temporaries."""
    r = z * coeffs[-1]
    r += coeffs[-2]
    for c in coeffs[-3::-1]:
        r *= z
        r += c
    return r


try:  # scipy's erf is C speed; the fdlibm port below is the fallback without scipy
    from scipy.special import erf as _scipy_erf
except ImportError:  # pragma: no cover
    _scipy_erf = None


def erf_array(x):
    """erf over an array, vectorised (numpy: fdlibm's piecewise rational approximations, about 1 ulp in
    float64; CuPy: cupyx.scipy.special.erf)."""
    xp = xp_of(x)
    if xp is not np:
        import cupyx.scipy.special as _sp  # optional GPU dependency, only reached with CuPy arrays
        return _sp.erf(x)
    if _scipy_erf is not None:
        return _scipy_erf(x)
    with np.errstate(all="ignore"):
        return _erf_np(np.asarray(x))


def _erf_np(x):
    # each piece is evaluated only on the elements in its range (boolean gather / scatter)
    flat = x.reshape(-1)
    ax = np.abs(flat)
    out = np.empty_like(flat)
    m = ax < 0.84375
    v = flat[m]
    z = v * v
    out[m] = v + v * (_horner(z, _PP) / _horner(z, _QQ))
    m = (ax >= 0.84375) & (ax < 1.25)
    s = ax[m] - 1
    out[m] = np.copysign(_ERX + _horner(s, _PA) / _horner(s, _QA), flat[m])
    m = (ax >= 1.25) & (ax < 6)
    v = ax[m]
    w = 1 / (v * v)
    r = np.where(v < 1 / 0.35, _horner(w, _RA) / _horner(w, _SA), _horner(w, _RB) / _horner(w, _SB))
    out[m] = np.copysign(1 - np.exp(-v * v - 0.5625 + r) / v, flat[m])
    m = ~(ax < 6)  # |x| >= 6 (erf is 1 to double precision) and nan
    v = flat[m]
    out[m] = np.where(np.isnan(v), v, np.copysign(1.0, v))
    return out.reshape(x.shape)


erf = _unary("erf", erf_array, lambda g, a, o: g * V.exp(-a * a) * _TWO_OVER_SQRT_PI)


# ------------------------------------------------------------------ activations
def _sigmoid_k(a):
    return 1 / (1 + _x(a).exp(-a))


sigmoid = _unary("sigmoid", _sigmoid_k, lambda g, a, o: g * o * (1 - o), save_in=False, save_out=True)


@defop("relu", save_out=True)
def relu(a):
    _no_bool("relu", a)
    return _x(a).maximum(a, 0).astype(a.dtype, copy=False)


@relu.def_backward
def _(ctx, g):
    return g * (ctx.out > 0)


_F32_F64 = (np.dtype(np.float32), np.dtype(np.float64))


@defop("gelu", save=(0,))
def gelu(a, approximate="none"):
    if approximate == "none" and type(a) is np.ndarray and a.dtype in _F32_F64:
        # numpy: the erf values go to backward (dispatcher.Keep), which would compute them again:
        # erf is the dearest part of a CPU transformer step (scipy's is ~8 ns per element)
        with np.errstate(all="ignore"):
            e = erf_array(a * _SQRT1_2)
            return Keep(a * 0.5 * (1 + e), extra=e)
    return _gelu(a, approximate)


@f32
def _gelu(a, approximate="none"):
    if a.dtype.kind not in "fV":
        raise DTypeError(f"gelu: expected a floating-point tensor, got {a.dtype}; convert it with .float() first")
    if approximate == "none":
        return a * 0.5 * (1 + erf_array(a * _SQRT1_2))
    if approximate == "tanh":
        return a * 0.5 * (1 + _x(a).tanh(_K_TANH * (a + 0.044715 * a * a * a)))
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


@gelu.def_backward
def _(ctx, g):
    a = ctx.args[0]
    approx = ctx.kwargs.get("approximate", ctx.args[1] if len(ctx.args) > 1 else "none")
    if ctx.kept is not None:  # the forward's erf values (numpy float32/float64 only)
        return V.gelu_backward(g, a, approx, Tensor._make(ctx.kept, a._device))
    return V.gelu_backward(g, a, approx)


@defop("gelu_backward")
@f32
def gelu_backward(g, a, approximate="none", erf=None):
    """grad_input of gelu: one op, so CUDA runs it as one fused kernel (vibetensor.cuda.fused).
    ``erf``: erf(a / sqrt(2)) as the forward computed it (CPU), else computed here."""
    xp = _x(a)
    if approximate == "tanh":
        t = xp.tanh(_K_TANH * (a + 0.044715 * a * a * a))
        return g * (0.5 * (1 + t) + 0.5 * a * (1 - t * t) * _K_TANH * (1 + 3 * 0.044715 * a * a))
    if erf is None:
        erf = erf_array(a * _SQRT1_2)
    return g * (0.5 * (1 + erf) + a * xp.exp(a * a * -0.5) * _INV_SQRT_2PI)


@defop("silu", save=(0,))
@f32
def silu(a):
    if a.dtype.kind not in "fV":
        raise DTypeError(f"silu: expected a floating-point tensor, got {a.dtype}; convert it with .float() first")
    return a * _sigmoid_k(a)


@silu.def_backward
def _(ctx, g):
    a = ctx.args[0]
    s = V.sigmoid(a)
    return g * s * (1 + a * (1 - s))


@defop("softplus", save=(0,))
@f32
def softplus(a, beta=1.0, threshold=20.0):
    if a.dtype.kind not in "fV":
        raise DTypeError(f"softplus: expected a floating-point tensor, got {a.dtype}; convert it with .float() "
                         f"first")
    xp = _x(a)
    z = a * beta
    return xp.where(z > threshold, a, xp.log1p(xp.exp(z)) / beta).astype(a.dtype, copy=False)


@softplus.def_backward
def _(ctx, g):
    a = ctx.args[0]
    beta = ctx.kwargs.get("beta", ctx.args[1] if len(ctx.args) > 1 else 1.0)
    threshold = ctx.kwargs.get("threshold", ctx.args[2] if len(ctx.args) > 2 else 20.0)
    z = a * beta
    return g * V.where(z > threshold, 1.0, V.sigmoid(z))


# ------------------------------------------------------------------ sign, abs, rounding (dtype-preserving)
@defop("abs", save=(0,))
def abs_(a):
    _no_bool("abs", a)
    return _x(a).abs(a)


@abs_.def_backward
def _(ctx, g):
    return g * V.sign(ctx.args[0])


absolute = abs_


@defop("sign")
def sign(a):
    if a.dtype.kind == "b":
        return a.copy()
    xp = _x(a)
    out = xp.sign(a)
    if a.dtype.kind in "fV":
        out = xp.where(xp.isnan(out), 0, out).astype(a.dtype, copy=False)  # sign(nan) is 0 in PyTorch
    return out


def _rounding(name, fn):
    fn = f32(fn)

    def kernel(a, *args, **kwargs):
        _no_bool(name, a)
        if a.dtype.kind in "iu":
            if kwargs.get("decimals", args[0] if args else 0):
                raise DTypeError(f"{name}: decimals= needs a floating-point tensor, got {a.dtype}")
            return a.copy()  # integers are already whole
        return fn(a, *args, **kwargs)
    kernel.__name__ = name
    op = defop(name)(kernel)
    op.def_backward(lambda ctx, g: zeros_for(ctx.args[0]))
    return op


floor = _rounding("floor", lambda a: _x(a).floor(a))
ceil = _rounding("ceil", lambda a: _x(a).ceil(a))
trunc = _rounding("trunc", lambda a: _x(a).trunc(a))
fix = trunc


def _round_k(a, decimals=0):
    rnd = _x(a).around  # half to even, as PyTorch (numpy and CuPy both have around)
    if decimals == 0:
        return rnd(a)
    f = 10.0 ** decimals
    return rnd(a * f) / f


round_ = _rounding("round", _round_k)
sign.def_backward(lambda ctx, g: zeros_for(ctx.args[0]))


@defop("frac")
@f32
def frac(a):
    if a.dtype.kind not in "fV":
        raise DTypeError(f"frac: expected a floating-point tensor, got {a.dtype}; convert it with .float() first")
    return a - _x(a).trunc(a)


@frac.def_backward
def _(ctx, g):
    return g


@defop("square", save=(0,))
def square(a):
    if a.dtype.kind == "b":
        a = a.astype(np.int64)  # PyTorch: square(bool) -> int64
    return f32(lambda x: x * x)(a)


@square.def_backward
def _(ctx, g):
    return g * ctx.args[0] * 2
