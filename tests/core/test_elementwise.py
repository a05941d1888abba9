"""Elementwise ops: forward vs numpy float64, backward vs finite differences, dtypes and promotion vs
PyTorch, broadcasting, non-contiguous inputs, empty tensors, errors."""
import math

import numpy as np
import pytest

import vibetensor as vt
from tests.opcheck import assert_close, check_op, noncontig, ALL, FLOATS, INTS, dtypes_on

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch not installed")
R = np.random.randn
_erf = np.vectorize(math.erf)




def _sig(x):
    return 1 / (1 + np.exp(-x))


def _softplus(x, beta=1.0, th=20.0):
    return np.where(x * beta > th, x, np.log1p(np.exp(x * beta)) / beta)


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def pos(shape):  # away from 0 (log, sqrt, reciprocal)
    return np.random.uniform(0.3, 3.0, shape)


def unit(shape):  # inside (-1, 1) away from the ends (asin, acos)
    return np.random.uniform(-0.9, 0.9, shape)


def away(shape):  # away from kinks and integers (abs, relu, floor, frac)
    return np.random.choice([-1, 1], shape) * np.random.uniform(0.2, 0.8, shape) + np.random.randint(-2, 3, shape)


# name -> (vt fn, numpy float64 reference, input sampler, torch fn or None)
UNARY = {
    "exp": (vt.exp, np.exp, R, "exp"),
    "exp2": (vt.exp2, np.exp2, R, "exp2"),
    "expm1": (vt.expm1, np.expm1, R, "expm1"),
    "log": (vt.log, np.log, pos, "log"),
    "log2": (vt.log2, np.log2, pos, "log2"),
    "log10": (vt.log10, np.log10, pos, "log10"),
    "log1p": (vt.log1p, np.log1p, pos, "log1p"),
    "sqrt": (vt.sqrt, np.sqrt, pos, "sqrt"),
    "rsqrt": (vt.rsqrt, lambda a: 1 / np.sqrt(a), pos, "rsqrt"),
    "reciprocal": (vt.reciprocal, lambda a: 1 / a, pos, "reciprocal"),
    "sin": (vt.sin, np.sin, R, "sin"),
    "cos": (vt.cos, np.cos, R, "cos"),
    "tan": (vt.tan, np.tan, unit, "tan"),
    "asin": (vt.asin, np.arcsin, unit, "asin"),
    "acos": (vt.acos, np.arccos, unit, "acos"),
    "atan": (vt.atan, np.arctan, R, "atan"),
    "sinh": (vt.sinh, np.sinh, R, "sinh"),
    "cosh": (vt.cosh, np.cosh, R, "cosh"),
    "tanh": (vt.tanh, np.tanh, R, "tanh"),
    "sigmoid": (vt.sigmoid, _sig, R, "sigmoid"),
    "erf": (vt.erf, _erf, R, "erf"),
    "relu": (vt.relu, lambda a: np.maximum(a, 0), away, "relu"),
    "gelu": (vt.gelu, lambda a: 0.5 * a * (1 + _erf(a / math.sqrt(2))), R, "nn.functional.gelu"),
    "gelu_tanh": (lambda x: vt.gelu(x, approximate="tanh"), _gelu_tanh, R,
                  lambda x: torch.nn.functional.gelu(x, approximate="tanh")),
    "silu": (vt.silu, lambda a: a * _sig(a), R, "nn.functional.silu"),
    "softplus": (vt.softplus, _softplus, lambda s: R(*s) * 3, "nn.functional.softplus"),
    "softplus_beta": (lambda x: vt.softplus(x, beta=2.0, threshold=3.0), lambda a: _softplus(a, 2.0, 3.0),
                      lambda s: R(*s) * 3, lambda x: torch.nn.functional.softplus(x, beta=2.0, threshold=3.0)),
    "neg": (vt.neg, np.negative, R, "neg"),
    "abs": (vt.abs, np.abs, away, "abs"),
    "square": (vt.square, np.square, R, "square"),
    "frac": (vt.frac, lambda a: a - np.trunc(a), away, "frac"),
    "sign": (vt.sign, np.sign, away, "sign"),
    "floor": (vt.floor, np.floor, away, "floor"),
    "ceil": (vt.ceil, np.ceil, away, "ceil"),
    "trunc": (vt.trunc, np.trunc, away, "trunc"),
    "round": (vt.round, np.round, away, "round"),
    "round_dec": (lambda x: vt.round(x, decimals=1), lambda a: np.round(a, 1), away,
                  lambda x: torch.round(x, decimals=1)),
    "nan_to_num": (vt.nan_to_num, np.nan_to_num, R, "nan_to_num"),
}


def _sample(name, shape):
    return np.asarray(UNARY[name][2](shape) if UNARY[name][2] is not R else R(*shape), dtype=np.float64)


def _torch_fn(spec):
    if callable(spec):
        return spec
    obj = torch
    for part in spec.split("."):
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_forward_backward(name, device):
    fn, ref, _, _ = UNARY[name]
    check_op(fn, ref, [_sample(name, (3, 4))], device=device)


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_noncontiguous(name, device):
    fn, ref, _, _ = UNARY[name]
    a = _sample(name, (4, 3))
    check_op(fn, ref, [a], device=device, make=lambda x: noncontig(x, device))


@needs_torch
@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_dtypes_vs_torch(name, device):
    """Every dtype: result dtype and values as PyTorch (which errors where we must error too)."""
    fn, _, _, tspec = UNARY[name]
    tfn = _torch_fn(tspec)
    a = _sample(name, (5, 3)) * (2 if name not in ("tan", "asin", "acos") else 1)
    for dt in dtypes_on(device, ALL):
        src = (a > 0) if dt is vt.bool else (np.abs(a) * 3 if dt is vt.uint8 else a * (3 if dt in INTS else 1))
        arr = src.astype(np.float32).astype(dt.np) if dt is not vt.bool else src
        x = vt.tensor(arr, device=device)
        tx = torch.from_numpy(np.asarray(arr, dtype=np.float32 if dt is vt.bfloat16 else arr.dtype)).to(
            getattr(torch, dt.name))
        try:
            want = tfn(tx)
        except (RuntimeError, NotImplementedError, TypeError):
            with pytest.raises((vt.DTypeError, TypeError, NotImplementedError, RuntimeError)):
                fn(x)
            continue
        got = fn(x)
        assert got.dtype.name == str(want.dtype).replace("torch.", ""), (name, dt)
        w = want.to(torch.float64).numpy() if want.dtype.is_floating_point else want.numpy()
        tol = {"float16": 2e-3, "bfloat16": 1.6e-2}.get(want.dtype.__repr__().replace("torch.", ""), 1e-5)
        assert_close(got, w, rtol=tol, atol=tol, msg=f"{name} {dt.name}")


def test_erf_accuracy_float64():
    x = np.concatenate([np.linspace(-7, 7, 20001), [0.0, 1e-300, -1e-12, 0.84375, 1.25, 1 / 0.35, 6.0]])
    got = vt.erf(vt.tensor(x, dtype=vt.float64)).numpy()
    np.testing.assert_allclose(got, _erf(x), rtol=1e-14, atol=1e-16)
    special = vt.erf(vt.tensor([np.inf, -np.inf, np.nan], dtype=vt.float64)).numpy()
    assert special[0] == 1 and special[1] == -1 and np.isnan(special[2])


# ------------------------------------------------------------------ binary
BINARY = {
    "add": (vt.add, np.add, R),
    "add_alpha": (lambda a, b: vt.add(a, b, alpha=2.5), lambda a, b: a + 2.5 * b, R),
    "sub": (vt.sub, np.subtract, R),
    "sub_alpha": (lambda a, b: vt.sub(a, b, alpha=-3), lambda a, b: a + 3 * b, R),
    "mul": (vt.mul, np.multiply, R),
    "div": (vt.div, np.divide, pos),
    "true_divide": (vt.true_divide, np.divide, pos),
    "pow": (vt.pow, np.power, pos),
    "atan2": (vt.atan2, np.arctan2, R),
    "maximum": (vt.maximum, np.maximum, R),
    "minimum": (vt.minimum, np.minimum, R),
    "fmod": (vt.fmod, np.fmod, lambda s: away(s) * 1.7 + 5),
    "remainder": (vt.remainder, np.remainder, lambda s: away(s) * 1.7 - 5),
    "hypot": (vt.hypot, np.hypot, R),
    "logaddexp": (vt.logaddexp, np.logaddexp, R),
}


@pytest.mark.parametrize("name", sorted(BINARY))
@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((2, 1, 4), (3, 1)), ((4,), (2, 3, 4)), ((), (2, 3))],
                         ids=["same", "bcast", "lead", "scalar0d"])
def test_binary_forward_backward(name, shapes, device):
    fn, ref, samp = BINARY[name]
    a, b = (np.asarray(samp(s) if samp is not R else R(*s), dtype=np.float64) for s in shapes)
    if name in ("fmod", "remainder"):
        b = np.where(np.abs(b) < 0.5, 1.3, b)
    check_op(fn, ref, [a, b], device=device)


@pytest.mark.parametrize("name", ["add", "mul", "div", "pow", "maximum", "atan2", "remainder"])
def test_binary_noncontiguous(name, device):
    fn, ref, samp = BINARY[name]
    a = np.asarray(samp((3, 5)) if samp is not R else R(3, 5))
    b = np.asarray(samp((3, 5)) if samp is not R else R(3, 5))
    check_op(fn, ref, [a, b], device=device, make=lambda x: noncontig(x, device))


@pytest.mark.parametrize("scalar", [2, -1.5, 0.5])
def test_binary_python_scalars_both_sides(scalar, device):
    a = pos((3, 2))
    for fn, ref in [(lambda x: x + scalar, lambda x: x + scalar), (lambda x: scalar - x, lambda x: scalar - x),
                    (lambda x: x * scalar, lambda x: x * scalar), (lambda x: scalar / x, lambda x: scalar / x),
                    (lambda x: x ** scalar, lambda x: x ** scalar), (lambda x: abs(scalar) ** x,
                                                                     lambda x: abs(scalar) ** x),
                    (lambda x: vt.atan2(x, scalar), lambda x: np.arctan2(x, scalar)),
                    (lambda x: vt.maximum(x, scalar), lambda x: np.maximum(x, scalar))]:
        check_op(fn, ref, [a], device=device)


def test_maximum_minimum_ties_split_gradient(device):
    a = vt.tensor([1.0, 2.0, 3.0], requires_grad=True, device=device)
    b = vt.tensor([1.0, 1.0, 4.0], requires_grad=True, device=device)
    vt.maximum(a, b).sum().backward()
    np.testing.assert_allclose(a.grad.cpu().numpy(), [0.5, 1, 0])
    np.testing.assert_allclose(b.grad.cpu().numpy(), [0.5, 0, 1])


def test_pow_gradient_edge_cases(device):
    x = vt.tensor([0.0, 2.0], dtype=vt.float64, requires_grad=True, device=device)
    (x ** 0).sum().backward()
    np.testing.assert_array_equal(x.grad.cpu().numpy(), [0, 0])
    e = vt.tensor([2.0, 3.0], dtype=vt.float64, requires_grad=True, device=device)
    vt.pow(x.detach(), e).sum().backward()  # d/de 0**e = 0 for e >= 0 (not nan)
    np.testing.assert_allclose(e.grad.cpu().numpy(), [0.0, 8 * math.log(2)])
    e.grad = None
    (2.0 ** e).sum().backward()
    np.testing.assert_allclose(e.grad.cpu().numpy(), [4 * math.log(2), 8 * math.log(2)])


def test_div_rounding_modes(device):
    a = np.array([7, -7, 7, -7, 0, 5])
    b = np.array([2, 2, -2, -2, 3, 5])
    ta, tb = vt.tensor(a, device=device), vt.tensor(b, device=device)
    t = vt.div(ta, tb, rounding_mode="trunc")
    assert t.dtype is vt.int64
    np.testing.assert_array_equal(t.cpu().numpy(), np.trunc(a / b).astype(np.int64))
    f = vt.div(ta, tb, rounding_mode="floor")
    assert f.dtype is vt.int64
    np.testing.assert_array_equal(f.cpu().numpy(), a // b)
    assert vt.div(ta, tb).dtype is vt.float32
    fa = vt.tensor(a * 1.5, dtype=vt.float64, device=device)
    np.testing.assert_array_equal(vt.div(fa, tb, rounding_mode="trunc").cpu().numpy(), np.trunc(a * 1.5 / b))
    np.testing.assert_array_equal((fa // tb).cpu().numpy(), np.floor_divide(a * 1.5, b))
    with pytest.raises(ValueError, match="rounding_mode"):
        vt.div(ta, tb, rounding_mode="round")
    x = vt.tensor([2.5, -1.5], requires_grad=True, device=device)
    vt.div(x, 2.0, rounding_mode="floor").sum().backward()
    np.testing.assert_array_equal(x.grad.cpu().numpy(), [0, 0])


# ------------------------------------------------------------------ ternary
def test_lerp_addcmul_addcdiv(device):
    s, e, w = R(3, 4), R(4), np.random.uniform(0, 1, (3, 1))
    check_op(vt.lerp, lambda a, b, c: a + c * (b - a), [s, e, w], device=device)
    check_op(lambda a, b: vt.lerp(a, b, 0.75), lambda a, b: a + 0.75 * (b - a), [s, e], device=device)
    check_op(lambda a, b, c: vt.addcmul(a, b, c, value=0.5), lambda a, b, c: a + 0.5 * b * c,
             [R(3, 4), R(3, 1), R(4)], device=device)
    check_op(lambda a, b, c: vt.addcdiv(a, b, c, value=-2), lambda a, b, c: a - 2 * b / c,
             [R(3, 4), R(3, 1), pos((4,))], device=device)
    x = vt.tensor([1.0, 2.0], device=device)
    np.testing.assert_array_equal(vt.lerp(x, x * 3, 1.0).cpu().numpy(), [3.0, 6.0])  # exact at weight 1
    ints = vt.tensor([1, 2], device=device)
    with pytest.raises(vt.DTypeError, match="addcdiv"):
        vt.addcdiv(ints, ints, ints)
    np.testing.assert_array_equal(vt.addcmul(ints, ints, ints, value=2).cpu().numpy(), [3, 10])


def test_where_forward_backward_and_promotion(device):
    c = R(3, 4) > 0
    cond = vt.tensor(c, device=device)
    check_op(lambda a, b: vt.where(cond, a, b), lambda a, b: np.where(c, a, b), [R(3, 4), R(4)], device=device)
    check_op(lambda a: vt.where(cond, a, 2.5), lambda a: np.where(c, a, 2.5), [R(3, 1)], device=device)
    check_op(lambda a: a.where(cond, -1.0), lambda a: np.where(c, a, -1.0), [R(3, 4)], device=device)
    i = vt.tensor([1, 2], device=device)
    b2 = vt.tensor([True, False], device=device)
    assert vt.where(b2, i, 2.5).dtype is vt.float32
    assert vt.where(b2, 1, 2).dtype is vt.int64
    assert vt.where(b2, 1.0, 2).dtype is vt.float32
    h = vt.tensor([1, 2], dtype=vt.float16, device=device)
    assert vt.where(b2, h, 2.5).dtype is vt.float16
    assert vt.where(b2, h, vt.tensor([1.0, 2.0], dtype=vt.float64, device=device)).dtype is vt.float64
    with pytest.raises(vt.DTypeError, match="bool"):
        vt.where(i, i, i)
    with pytest.raises(vt.ShapeError, match=r"\(2,\).*\(3,\)"):
        vt.where(b2, vt.zeros(3, device=device), 1.0)


def test_clamp_scalars_and_tensors(device):
    a = away((4, 5))
    check_op(lambda x: vt.clamp(x, -0.5, 0.5), lambda x: np.clip(x, -0.5, 0.5), [a], device=device)
    check_op(lambda x: x.clamp(min=0.1), lambda x: np.maximum(x, 0.1), [a], device=device)
    check_op(lambda x: x.clip(max=0.1), lambda x: np.minimum(x, 0.1), [a], device=device)
    lo, hi = R(5) - 1.3, R(4, 1) + 1.3
    check_op(lambda x, l, h: vt.clamp(x, l, h), lambda x, l, h: np.minimum(np.maximum(x, l), h), [a, lo, hi],
             device=device)
    check_op(lambda x, l: vt.clamp(x, min=l), lambda x, l: np.maximum(x, l), [a, lo], device=device)
    # min > max gives max, and the gradient goes to max
    x = vt.tensor([0.0, 5.0], requires_grad=True, device=device)
    m = vt.tensor([2.0, 2.0], requires_grad=True, device=device)
    M = vt.tensor([1.0, 1.0], requires_grad=True, device=device)
    out = vt.clamp(x, m, M)
    np.testing.assert_array_equal(out.detach().cpu().numpy(), [1.0, 1.0])
    out.sum().backward()
    np.testing.assert_array_equal(M.grad.cpu().numpy(), [1, 1])
    np.testing.assert_array_equal(m.grad.cpu().numpy(), [0, 0])
    np.testing.assert_array_equal(x.grad.cpu().numpy(), [0, 0])
    i = vt.tensor([3, -2], device=device)
    assert vt.clamp(i, 0.5).dtype is vt.float32
    assert vt.clamp(vt.tensor([True, False], device=device), 0, 1).dtype is vt.int64
    assert vt.clamp(i, 0, 1).dtype is vt.int64
    with pytest.raises(ValueError, match="min.*max"):
        vt.clamp(i)


@needs_torch
def test_nan_to_num_and_classification(device):
    a = np.array([np.nan, np.inf, -np.inf, 1.5, -0.0])
    for dt in dtypes_on(device, FLOATS):
        x = vt.tensor(a, dtype=dt, device=device)
        tx = torch.tensor(a).to(getattr(torch, dt.name))
        for got, want in [(vt.nan_to_num(x), torch.nan_to_num(tx)),
                          (vt.nan_to_num(x, nan=1.0, posinf=2.0, neginf=-3.0),
                           torch.nan_to_num(tx, nan=1.0, posinf=2.0, neginf=-3.0))]:
            assert got.dtype is dt
            np.testing.assert_array_equal(got.to(vt.float64).cpu().numpy(), want.to(torch.float64).numpy())
        for f in ("isnan", "isinf", "isfinite", "isposinf", "isneginf"):
            got = getattr(vt, f)(x)
            assert got.dtype is vt.bool
            np.testing.assert_array_equal(got.cpu().numpy(), getattr(torch, f)(tx).numpy())
    i = vt.tensor([1, 2], device=device)
    assert not vt.isnan(i).any().item() and vt.isfinite(i).all().item()
    check_op(vt.nan_to_num, np.nan_to_num, [R(3, 2)], device=device)


# ------------------------------------------------------------------ promotion vs PyTorch
def _make_pair(dt, shape, device, kind="any"):
    """(vt tensor, torch tensor) holding the same values; kind: any | nonzero | exponent (0..2)."""
    a = np.asarray(np.random.randn(*shape) * 4)
    if kind == "nonzero":
        a = np.where(np.abs(a) < 1, 2.0, a)
    elif kind == "exponent":
        a = np.asarray(np.random.randint(0, 3, shape), dtype=np.float64)
    if dt is vt.bool:
        arr = a > 0 if kind == "any" else np.ones(shape, dtype=bool)
    elif dt is vt.uint8:
        arr = np.abs(a).astype(np.uint8) + (1 if kind == "nonzero" else 0)
    else:
        arr = a.astype(np.float32).astype(dt.np) if dt.is_floating_point else a.astype(dt.np)
    arr = np.asarray(arr)
    t = vt.tensor(arr, device=device)
    ta = torch.from_numpy(np.asarray(arr, dtype=np.float32) if dt is vt.bfloat16 else arr.copy())
    return t, ta.to(getattr(torch, dt.name))


PROMO_OPS = ["add", "sub", "mul", "div", "floor_divide", "remainder", "maximum", "minimum", "eq", "lt",
             "atan2", "pow", "fmod", "logical_and", "bitwise_and"]


@needs_torch
@pytest.mark.parametrize("op", PROMO_OPS)
def test_promotion_matches_torch(op, device):
    """Every dtype pair, plus 0-d tensors and Python scalars: same result dtype (or same refusal) and
    values as PyTorch."""
    dts = dtypes_on(device, ALL)
    tfn = getattr(torch, op)
    vfn = getattr(vt, op)
    divlike = op in ("div", "floor_divide", "remainder", "fmod")
    operands = [(a, b, (2, 3), (3,)) for a in dts for b in dts] + \
               [(a, b, (2, 3), ()) for a in dts for b in (vt.float64, vt.int64, vt.bool)]
    for da, db, sa, sb in operands:
        x, tx = _make_pair(da, sa, device, "nonzero" if op == "pow" else "any")
        y, ty = _make_pair(db, sb, device, "nonzero" if divlike else ("exponent" if op == "pow" else "any"))
        _compare_with_torch(op, vfn, tfn, (x, y), (tx, ty), f"{da.name},{db.name},{sb}")
    for scalar in (2, 2.5, True):
        for da in dts:
            x, tx = _make_pair(da, (2, 3), device, "nonzero")
            _compare_with_torch(op, vfn, tfn, (x, scalar), (tx, scalar), f"{da.name},{scalar!r}")


def _compare_with_torch(op, vfn, tfn, vargs, targs, what):
    try:
        want = tfn(*targs)
    except (RuntimeError, NotImplementedError, TypeError) as e:
        if "must be Tensor" in str(e):
            return  # vibetensor also takes Python scalars where PyTorch's overload wants a tensor
        with pytest.raises((vt.DTypeError, TypeError, NotImplementedError, RuntimeError, ValueError,
                            ZeroDivisionError)):
            vfn(*vargs)
        return
    got = vfn(*vargs)
    wn = str(want.dtype).replace("torch.", "")
    assert got.dtype.name == wn, f"{op}({what}): dtype {got.dtype.name}, torch gives {wn}"
    w = want.to(torch.float64).numpy() if want.dtype.is_floating_point else want.numpy()
    tol = {"float16": 2e-3, "bfloat16": 1.6e-2, "float32": 1e-5}.get(wn, 1e-9)
    if op == "pow" and wn in ("float16", "bfloat16"):
        tol *= 2
    g = got.to(vt.float64).cpu().numpy() if got.dtype.is_floating_point else got.cpu().numpy()
    np.testing.assert_allclose(g, w, rtol=tol, atol=tol, err_msg=f"{op}({what})")


# ------------------------------------------------------------------ comparisons, logical, bitwise
@pytest.mark.parametrize("op,ref", [("eq", np.equal), ("ne", np.not_equal), ("lt", np.less),
                                    ("le", np.less_equal), ("gt", np.greater), ("ge", np.greater_equal)])
def test_comparisons(op, ref, device):
    a, b = np.round(R(3, 4)), np.round(R(4))
    x, y = vt.tensor(a, device=device), vt.tensor(b, device=device)
    got = getattr(vt, op)(x, y)
    assert got.dtype is vt.bool and not got.requires_grad
    np.testing.assert_array_equal(got.cpu().numpy(), ref(a, b))
    np.testing.assert_array_equal(getattr(x, op)(0.0).cpu().numpy(), ref(a, 0.0))
    np.testing.assert_array_equal({"eq": x == y, "ne": x != y, "lt": x < y, "le": x <= y, "gt": x > y,
                                   "ge": x >= y}[op].cpu().numpy(), ref(a, b))
    xg = vt.tensor(a, requires_grad=True, device=device)
    assert not getattr(vt, op)(xg, y).requires_grad  # comparisons are not differentiable


def test_logical_and_bitwise(device):
    a = np.array([0, 1, 2, -3], dtype=np.int32)
    b = np.array([1, 0, 2, 5], dtype=np.int32)
    x, y = vt.tensor(a, device=device), vt.tensor(b, device=device)
    for op, ref in [("logical_and", np.logical_and), ("logical_or", np.logical_or),
                    ("logical_xor", np.logical_xor)]:
        got = getattr(vt, op)(x, y.to(vt.float32))
        assert got.dtype is vt.bool
        np.testing.assert_array_equal(got.cpu().numpy(), ref(a, b))
    np.testing.assert_array_equal(vt.logical_not(x).cpu().numpy(), np.logical_not(a))
    for op, ref in [("bitwise_and", np.bitwise_and), ("bitwise_or", np.bitwise_or),
                    ("bitwise_xor", np.bitwise_xor)]:
        got = getattr(vt, op)(x, y)
        assert got.dtype is vt.int32
        np.testing.assert_array_equal(got.cpu().numpy(), ref(a, b))
    np.testing.assert_array_equal((~x).cpu().numpy(), ~a)
    np.testing.assert_array_equal((x & 6).cpu().numpy(), a & 6)
    m = vt.tensor([True, False], device=device)
    np.testing.assert_array_equal((~m).cpu().numpy(), [False, True])
    np.testing.assert_array_equal((m ^ vt.tensor([True, True], device=device)).cpu().numpy(), [False, True])
    with pytest.raises(vt.DTypeError, match="integer and bool"):
        vt.bitwise_and(vt.ones(2, device=device), vt.ones(2, device=device))


def test_isclose_allclose_equal(device):
    a = vt.tensor([1.0, np.inf, -np.inf, np.nan, 1.0, 0.0], dtype=vt.float64, device=device)
    b = vt.tensor([1.0 + 1e-9, np.inf, np.inf, np.nan, 1.1, 1e-9], dtype=vt.float64, device=device)
    np.testing.assert_array_equal(vt.isclose(a, b).cpu().numpy(), [True, True, False, False, False, True])
    np.testing.assert_array_equal(vt.isclose(a, b, equal_nan=True).cpu().numpy(),
                                  [True, True, False, True, False, True])
    np.testing.assert_array_equal(vt.isclose(a, b, rtol=0.2).cpu().numpy(), [True, True, False, False, True, True])
    assert vt.allclose(a[:2], b[:2]) is True
    assert vt.allclose(a, b) is False
    assert vt.allclose(a, a, equal_nan=True) is True
    ints = vt.tensor([0, 255], dtype=vt.uint8, device=device)
    np.testing.assert_array_equal(vt.isclose(ints, vt.tensor([255, 255], dtype=vt.uint8, device=device),
                                             atol=1).cpu().numpy(), [False, True])
    assert vt.equal(a[:3], a[:3]) is True
    assert vt.equal(a[:2], a[:3]) is False
    assert vt.equal(a[:2], b[:2]) is False
    assert a[:2].equal(a[:2]) is True


# ------------------------------------------------------------------ low precision, empty, errors
@pytest.mark.parametrize("dt", [vt.float16, vt.bfloat16])
def test_half_results_are_rounded_float32_results(dt, device):
    if dt not in dtypes_on(device, [dt]):
        pytest.skip(f"{dt.name} unsupported on this device")
    a = R(64).astype(np.float32).astype(dt.np)
    b = pos((64,)).astype(np.float32).astype(dt.np)
    x, y = vt.tensor(a, device=device), vt.tensor(b, device=device)
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    for got, want in [(x + y, a32 + b32), (x * y, a32 * b32), (x / y, a32 / b32), (vt.exp(x), np.exp(a32)),
                      (vt.gelu(x), 0.5 * a32 * (1 + _erf(a32 / math.sqrt(2)))), (vt.log(y), np.log(b32)),
                      (vt.sigmoid(x), _sig(a32))]:
        assert got.dtype is dt
        expect = np.asarray(want, dtype=np.float32).astype(dt.np).astype(np.float32)
        if device == "cpu":  # bit-exact: numpy/ml_dtypes and our float32 path round the same way
            np.testing.assert_array_equal(got.cpu().numpy().astype(np.float32), expect)
        else:  # CUDA's float32 math may differ by an ulp before rounding
            np.testing.assert_allclose(got.cpu().numpy().astype(np.float32), expect, rtol=2 ** -7, atol=1e-3)


def test_half_backward(device):
    for dt in dtypes_on(device, [vt.float16, vt.bfloat16]):
        check_op(lambda x, y: vt.gelu(x) * y + vt.exp(x) / y, lambda x, y: 0.5 * x * (1 + _erf(x / math.sqrt(2))) * y
                 + np.exp(x) / y, [R(3, 4), pos((4,))], device=device, dtype=dt, grad=False)
        x = vt.tensor(R(5), dtype=dt, requires_grad=True, device=device)
        vt.tanh(x).sum().backward()
        assert x.grad.dtype is dt
        assert_close(x.grad, 1 - np.tanh(x.detach().to(vt.float64).cpu().numpy()) ** 2, dtype=dt)


def test_mixed_dtype_gradients_cast_to_input_dtype(device):
    a = vt.tensor(R(3), dtype=vt.float32, requires_grad=True, device=device)
    b = vt.tensor(R(1), dtype=vt.float64, requires_grad=True, device=device)
    (a * b).sum().backward()
    assert a.grad.dtype is vt.float32 and b.grad.dtype is vt.float64
    assert a.grad.shape == (3,) and b.grad.shape == (1,)


def test_empty_tensors(device):
    e = vt.zeros((0, 3), device=device)
    for out in (vt.exp(e), e + vt.ones(3, device=device), vt.maximum(e, 1.0), vt.where(e > 0, e, 1.0),
                vt.clamp(e, 0, 1), vt.gelu(e), e == e):
        assert tuple(out.shape) == (0, 3)
    x = vt.zeros((0, 3), requires_grad=True, device=device)
    (vt.sin(x) * 2).sum().backward()
    assert tuple(x.grad.shape) == (0, 3)


def test_errors_are_clear(device):
    a, b = vt.zeros((2, 3), device=device), vt.zeros((2, 4), device=device)
    for fn in (vt.add, vt.mul, vt.sub, vt.div, vt.pow, vt.maximum, vt.atan2, vt.eq, vt.logaddexp):
        with pytest.raises(vt.ShapeError, match=r"\(2, 3\) and \(2, 4\)"):
            fn(a, b)
    bools = vt.tensor([True, False], device=device)
    with pytest.raises(vt.DTypeError, match="bool"):
        bools - bools
    with pytest.raises(vt.DTypeError, match="bool"):
        -bools
    with pytest.raises(vt.DTypeError, match="bool"):
        vt.abs(bools)
    ints = vt.tensor([1, 2], device=device)
    with pytest.raises(ValueError, match="negative integer powers"):
        ints ** -1
    np.testing.assert_array_equal((vt.tensor([2, 1, -1, -1], device=device)
                                   ** vt.tensor([-1, -2, -3, -2], device=device)).cpu().numpy(), [0, 1, -1, 1])
    if device == "cpu":  # integer division by zero is undefined on CUDA (as in PyTorch)
        for fn in (lambda: ints // 0, lambda: ints % vt.tensor([1, 0]), lambda: vt.fmod(ints, 0),
                   lambda: vt.div(ints, 0, rounding_mode="trunc")):
            with pytest.raises(ZeroDivisionError, match="division by zero"):
                fn()
    with pytest.raises(vt.DTypeError, match="floating-point"):
        vt.frac(ints)
    with pytest.raises(vt.DTypeError, match="floating-point"):
        vt.silu(ints)
    with pytest.raises(ValueError, match="approximate"):
        vt.gelu(vt.ones(2, device=device), approximate="fast")


def test_inplace_variants(device):
    x = vt.tensor([1.0, -2.0, 3.0], device=device)
    x.mul_(2).add_(1).clamp_(min=0).sqrt_()
    np.testing.assert_allclose(x.cpu().numpy(), np.sqrt(np.maximum(np.array([1.0, -2.0, 3.0]) * 2 + 1, 0)),
                               rtol=1e-6)
    y = vt.tensor([1, 2], device=device)
    with pytest.raises(vt.DTypeError):
        y.div_(2)  # int tensor can't hold a float result


OP_NAMES = """add sub mul div true_divide floor_divide remainder pow neg abs exp exp2 expm1 log log2 log10 log1p sqrt
rsqrt sin cos tan asin acos atan atan2 sinh cosh tanh sigmoid relu gelu silu softplus sign floor ceil round trunc frac
reciprocal square clamp clip where maximum minimum fmod lerp addcmul addcdiv hypot logaddexp nan_to_num eq ne lt le gt
ge logical_and logical_or logical_xor logical_not bitwise_and bitwise_or bitwise_xor bitwise_not isnan isinf isfinite
isclose allclose equal erf""".split()


def test_every_op_is_reachable_three_ways():
    for name in OP_NAMES:
        op = getattr(vt.ops.vt, name)
        assert getattr(vt, name) is op, name
        assert callable(getattr(vt.Tensor, name)), name


def test_where_single_argument_is_nonzero(device):
    idx = vt.where(vt.tensor([[True, False], [False, True]], device=device))
    assert len(idx) == 2
    np.testing.assert_array_equal(idx[0].cpu().numpy(), [0, 1])
    np.testing.assert_array_equal(idx[1].cpu().numpy(), [0, 1])


def test_reverse_operators_with_scalars(device):
    x = vt.tensor([1.5, -2.0, 4.0], dtype=vt.float64, device=device)
    a = np.array([1.5, -2.0, 4.0])
    for got, want in [(7 // x, 7 // a), (7 % x, 7 % a), (2 ** x, 2 ** a), (1 - x, 1 - a), (3 / x, 3 / a),
                      (x // 2, a // 2), (x % -1.5, a % -1.5), (abs(x), np.abs(a))]:
        assert got.dtype is vt.float64
        np.testing.assert_allclose(got.cpu().numpy(), want)


def test_erf_fallback_without_scipy_matches_math_erf():
    import math
    from vibetensor.core.ops.elementwise_unary import _erf_np
    x = np.concatenate([np.linspace(-7, 7, 2001), [0.0, -0.0, np.inf, -np.inf, 0.84375, 1.25, 6.0]])
    got = _erf_np(x.copy())
    ref = np.array([math.erf(v) for v in x])
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-16)


@needs_torch
@pytest.mark.parametrize("dtype", [vt.float32, vt.float64])
def test_atan2_gradient_at_origin_is_zero_as_torch(dtype):
    # d/da atan2 = b / (a^2 + b^2): PyTorch sets it to 0 where the reciprocal is inf, at (0, 0) or on underflow
    a = np.array([0.0, 0.0, 1.0, -2.0, 1e-200, 0.0])
    b = np.array([0.0, -1.0, 0.0, 3.0, 1e-200, -0.0])
    if dtype is vt.float32:
        a, b = a[:4], b[:4]
    va, vb = vt.tensor(a, dtype=dtype, requires_grad=True), vt.tensor(b, dtype=dtype, requires_grad=True)
    td = getattr(torch, dtype.name)
    ta, tb = torch.tensor(a, dtype=td, requires_grad=True), torch.tensor(b, dtype=td, requires_grad=True)
    vt.atan2(va, vb).sum().backward()
    torch.atan2(ta, tb).sum().backward()
    np.testing.assert_array_equal(va.grad.numpy(), ta.grad.numpy())
    np.testing.assert_array_equal(vb.grad.numpy(), tb.grad.numpy())
    x = vt.tensor([0.0, 2.0], dtype=dtype, requires_grad=True)  # with a scalar operand
    vt.atan2(x, 0.0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0])
