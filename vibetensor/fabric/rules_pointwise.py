"""Sharding rules for elementwise ops (broadcasting, Python scalars) and linear ops on Partial."""
from __future__ import annotations

from .handler import DERIVED, Plan, rule
from .spec import Partial, ReduceOp, Replicate, Shard

POINTWISE = """
add sub _sub mul div true_divide divide floor_divide remainder fmod pow neg abs exp exp2 expm1 log log2 log10 log1p
sqrt rsqrt sin cos tan asin acos atan atan2 sinh cosh tanh sigmoid relu gelu silu softplus sign floor ceil round
trunc frac reciprocal square erf maximum minimum lerp addcmul addcdiv hypot logaddexp _where _clamp masked_fill
eq ne lt le gt ge logical_and logical_or logical_xor logical_not isnan isinf isfinite isposinf isneginf isclose
bitwise_and bitwise_or bitwise_xor bitwise_not nan_to_num to_dtype clone contiguous _div_trunc
""".split()

_LINEAR_ALL = {"add", "sub", "_sub"}                           # linear when every tensor operand is Partial
_LINEAR_UNARY = {"neg", "clone", "contiguous"}
_LINEAR_ONE = {"mul": None, "div": 0, "true_divide": 0, "divide": 0}  # one Partial operand (div: numerator)


def broadcast(shapes):
    n = max((len(s) for s in shapes), default=0)
    out = [1] * n
    for s in shapes:
        for i, d in enumerate(s):
            j = n - len(s) + i
            if out[j] == 1:
                out[j] = d
    return tuple(out)


def _linear_partial(call, ps):
    """Input/output placements when the op can stay Partial on this axis, else None."""
    parts = [i for i, p in enumerate(ps) if isinstance(p, Partial)]
    if not parts:
        return None
    ops = {ps[i].reduce_op for i in parts}
    if len(ops) != 1 or next(iter(ops)) not in (ReduceOp.SUM, ReduceOp.AVG):
        return None
    out = ps[parts[0]]
    name = call.name
    scalars = [a for a in call.args if isinstance(a, (int, float, complex)) and not isinstance(a, bool)]
    if name in _LINEAR_ALL and len(parts) == len(ps) and not scalars:
        return list(ps), out
    if name in _LINEAR_UNARY and len(ps) == 1:
        return list(ps), out
    if name == "to_dtype" and len(ps) == 1 and call.dts[0].dtype.is_floating_point and \
            getattr(call.arg("dtype"), "is_floating_point", False):
        return list(ps), out
    if name in _LINEAR_ONE and len(parts) == 1:
        pos = _LINEAR_ONE[name]
        if pos is not None and call.args[pos] is not call.dts[parts[0]]:
            return None
        return [p if i == parts[0] else Replicate() for i, p in enumerate(ps)], out
    return None


@rule(*POINTWISE)
def pointwise(call):
    ts = call.dts
    shapes = [tuple(t.shape) for t in ts]
    out_shape = broadcast(shapes)
    n = len(out_shape)
    ins = [[] for _ in ts]
    outs = []
    for m in range(call.mesh.ndim):
        ps = call.placements(m)
        lin = _linear_partial(call, ps)
        if lin is not None:
            for i, p in enumerate(lin[0]):
                ins[i].append(p)
            outs.append(lin[1])
            continue
        target = None
        for t, p in zip(ts, ps):
            if isinstance(p, Shard) and t.shape[p.dim] == out_shape[p.dim + n - t.ndim]:
                target = p.dim + n - t.ndim
                break
        for i, t in enumerate(ts):
            j = None if target is None else target - (n - t.ndim)
            ok = j is not None and j >= 0 and t.shape[j] == out_shape[target]
            ins[i].append(Shard(j) if ok else Replicate())
        outs.append(Shard(target) if target is not None else Replicate())
    return Plan(ins, tuple(outs))


# backward helpers of elementwise ops (gelu_backward(g, x, ...), silu_backward ...) are elementwise too
_ACTIVATIONS = {"gelu", "silu", "sigmoid", "tanh", "relu", "softplus", "elu", "selu", "celu", "leaky_relu",
                "hardtanh", "hardsigmoid", "hardswish", "mish", "erf", "threshold", "logsigmoid", "relu6"}
DERIVED.append((lambda n: n.endswith("_backward") and n[:-len("_backward")] in _ACTIVATIONS, pointwise))
