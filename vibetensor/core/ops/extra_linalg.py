"""einsum, trace, diag, diag_embed (PyTorch semantics and gradients).

einsum parses the equation once into per-operand label lists (the ellipsis becomes labels of its own),
so the kernel hands numpy/CuPy an equation of plain letters. Labels of size 1 in one operand and n in
another broadcast (as PyTorch): the operand's size-1 dims are squeezed and the label dropped from its
subscript before the backend einsum. The gradient of each operand is another einsum of the output
gradient and the other operands; a label repeated inside an operand (a diagonal: ``ii->i``) gets a
fresh label tied to it by an identity matrix, and a label summed only inside that operand
(``ij->i``'s j) comes back by broadcasting.
"""
from __future__ import annotations

import string

import numpy as np

from .. import dtype as _dt
from ..dispatcher import defop
from ._util import V, cast_grad, wrap_dim, xp_of
from .elementwise_util import is_half
from .shape_util import promote_arrays
from ...errors import ShapeError

_LETTERS = string.ascii_uppercase + string.ascii_lowercase  # PyTorch's implicit-output order: A-Z, then a-z


# ------------------------------------------------------------------ einsum: parsing
def _parse(equation, shapes):
    """(input label lists, output label list, size per label). Labels are letters; the ellipsis's dims
    become fresh letters, right-aligned across operands (broadcast like any other label)."""
    if not isinstance(equation, str):
        raise TypeError(f"einsum: the equation must be a string, got {type(equation).__name__}")
    eq = equation.replace(" ", "")
    if "->" in eq:
        lhs, rhs = eq.split("->", 1)
        if "->" in rhs:
            raise ValueError(f"einsum: equation {equation!r} has more than one '->'")
    else:
        lhs, rhs = eq, None
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        raise ValueError(f"einsum: equation {equation!r} names {len(terms)} operand(s) but {len(shapes)} were "
                         f"given")

    def split_term(term, where):
        if term.count("...") > 1 or term.replace("...", "").count(".") > 0:
            raise ValueError(f"einsum: {where} {term!r} of {equation!r}: '...' may appear at most once, and '.' "
                             f"only as part of '...'")
        bad = [c for c in term.replace("...", "") if c not in _LETTERS]
        if bad:
            raise ValueError(f"einsum: invalid subscript {bad[0]!r} in {equation!r}: subscripts must be letters "
                             f"a-z or A-Z")
        if "..." in term:
            a, b = term.split("...")
            return list(a), True, list(b)
        return list(term), False, []

    parsed = [split_term(t, f"operand {i}") for i, t in enumerate(terms)]
    ell_nd = 0
    for i, ((pre, has, post), shape) in enumerate(zip(parsed, shapes)):
        nl = len(pre) + len(post)
        if (not has and nl != len(shape)) or (has and nl > len(shape)):
            raise ShapeError(f"einsum: operand {i} has {len(shape)} dim(s) (shape {tuple(shape)}) but subscript "
                             f"{terms[i]!r} names {nl}{' (plus ...)' if has else ''}; the counts must match")
        if has:
            ell_nd = max(ell_nd, len(shape) - nl)
    used = set(lhs) | set(rhs or "")
    free = [c for c in _LETTERS if c not in used]
    if ell_nd > len(free):
        raise NotImplementedError(f"einsum: {equation!r} needs more than 52 distinct labels")
    ell = free[:ell_nd]
    ins = []
    for (pre, has, post), shape in zip(parsed, shapes):
        k = len(shape) - len(pre) - len(post) if has else 0
        ins.append(pre + ell[ell_nd - k:] + post)
    sizes = {}
    for i, (labels, shape) in enumerate(zip(ins, shapes)):
        own = {}
        for lab, s in zip(labels, shape):
            if own.setdefault(lab, s) != s:
                raise ShapeError(f"einsum: subscript {lab!r} is repeated in operand {i} (shape {tuple(shape)}) with "
                                 f"different sizes {own[lab]} and {s}; a repeated subscript takes a diagonal")
        for lab, s in zip(labels, shape):
            cur = sizes.get(lab)
            if cur is None or cur == 1:
                sizes[lab] = s
            elif s != 1 and s != cur:
                name = "..." if lab in ell else repr(lab)
                raise ShapeError(f"einsum: subscript {name} has size {s} in operand {i} (shape {tuple(shape)}) "
                                 f"but size {cur} elsewhere in {equation!r}; sizes must match or be 1")
    if rhs is None:
        counts = {}
        for labels in ins:
            for lab in labels:
                counts[lab] = counts.get(lab, 0) + 1
        out = ell + sorted((c for c, n in counts.items() if n == 1 and c not in ell), key=_LETTERS.index)
    else:
        pre, has, post = split_term(rhs, "output")
        out = pre + (ell if has else []) + post
        for c in pre + post:
            if not any(c in labels for labels in ins):
                raise ValueError(f"einsum: output subscript {c!r} of {equation!r} does not appear in any input")
        if len(set(out)) != len(out):
            raise ValueError(f"einsum: output subscripts of {equation!r} repeat a label")
    return ins, out, sizes


def _sub(labels):
    return "".join(labels)


# ------------------------------------------------------------------ einsum: op
@defop("einsum", composite=True)
def einsum(equation, *operands):
    """``einsum(equation, *operands)`` (or a list of operands): letters, '...' broadcasting, implicit
    output, repeated labels (diagonals and traces). The sublist form is not supported."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    if not isinstance(equation, str):
        raise NotImplementedError("einsum: only the equation-string form einsum('ij,jk->ik', a, b) is supported, "
                                  "not the sublist form einsum(a, [0, 1], b, [1, 2])")
    if not operands:
        raise ValueError("einsum: expected at least one operand")
    for i, t in enumerate(operands):
        if not hasattr(t, "_data"):
            raise TypeError(f"einsum: operand {i} is a {type(t).__name__}, not a tensor")
    dt = operands[0].dtype
    for t in operands[1:]:
        dt = _dt.promote_types(dt, t.dtype)
    ops = [t if t.dtype is dt else t.to(dt) for t in operands]
    return V._einsum(equation, ops)


@defop("_einsum", save=(1,))
def _einsum(equation, operands):
    ins, out, sizes = _parse(equation, [a.shape for a in operands])
    arrs, _ = promote_arrays(list(operands))
    xp = xp_of(arrs[0])
    dt = arrs[0].dtype
    if dt.kind == "b":
        arrs = [a.astype(np.int64) for a in arrs]
    elif is_half(dt):
        arrs = [a.astype(np.float32) for a in arrs]
    terms = []
    for a, labels in zip(arrs, ins):
        drop = tuple(i for i, (lab, s) in enumerate(zip(labels, a.shape)) if s == 1 and sizes[lab] != 1)
        if drop:
            a = a.reshape(tuple(s for i, s in enumerate(a.shape) if i not in drop))
            labels = [lab for i, lab in enumerate(labels) if i not in drop]
        terms.append((a, labels))
    present = set().union(*[set(lab) for _, lab in terms])
    missing = [lab for lab in out if lab not in present]  # only ever size 1 everywhere... or broadcast away
    eq_out = [lab for lab in out if lab in present]
    r = xp.einsum(",".join(_sub(lab) for _, lab in terms) + "->" + _sub(eq_out), *[a for a, _ in terms],
                  optimize=len(terms) > 1)
    r = xp.asarray(r)
    if missing:  # a label every operand had as size 1 (squeezed away): put it back
        r = r.reshape(tuple(sizes[lab] if lab in present else 1 for lab in out))
    if dt.kind == "b":
        return r != 0
    if dt.kind in "iu" and _sums_alone(ins, out):
        return r.astype(np.int64, copy=False)  # PyTorch sums such a label with sum(), which gives int64
    return r.astype(dt, copy=False)


def _sums_alone(ins, out):
    """Whether some operand has a label found in no other operand nor the output."""
    for k, labels in enumerate(ins):
        others = set(out).union(*[set(x) for j, x in enumerate(ins) if j != k])
        if any(lab not in others for lab in labels):
            return True
    return False


@_einsum.def_backward
def _(ctx, g):
    equation = ctx.args[0]
    ts = ctx.args[1]
    ins, out, sizes = _parse(equation, [t.shape for t in ts])
    used = set(equation) | set().union(*[set(x) for x in ins])
    free = iter(c for c in _LETTERS if c not in used)
    grads = []
    for k, t in enumerate(ts):
        if not ctx.needs_input_grad[k]:
            grads.append(None)
            continue
        shape = tuple(t.shape)
        want, eyes, tied = [], [], []
        seen = set()
        for p, (lab, s) in enumerate(zip(ins[k], shape)):
            bcast = s == 1 and sizes[lab] != 1
            if bcast:
                tied.append(None)
                continue
            if lab in seen:  # a repeated label: a fresh one, tied to it by an identity matrix
                f = next(free, None)
                if f is None:
                    raise NotImplementedError(f"einsum backward: {equation!r} needs more than 52 distinct labels")
                eyes.append(lab + f)
                tied.append(f)
            else:
                seen.add(lab)
                tied.append(lab)
        avail = set(out)
        for j, lab in enumerate(ins):
            if j != k:
                avail |= set(lab)
        for e in eyes:
            avail |= set(e)
        want = [lab for lab in tied if lab is not None and lab in avail]
        terms = [_sub(out)] + [_sub(ins[j]) for j in range(len(ts)) if j != k] + eyes
        operands = [g] + [ts[j] for j in range(len(ts)) if j != k]
        from ..factories import eye
        operands += [eye(sizes[e[0]], dtype=g.dtype, device=g.device) for e in eyes]
        r = V.einsum(",".join(terms) + "->" + _sub(want), *operands)
        rs = iter(r.shape)  # a want label may come back as size 1 (broadcast in the others): expand it
        full = tuple(next(rs) if (lab is not None and lab in want) else 1 for lab in tied)
        if full != tuple(r.shape):
            r = V.reshape(r, full)
        if full != shape:
            r = V.expand(r, shape)
        grads.append(cast_grad(r, t.dtype))
    return tuple(grads)


# ------------------------------------------------------------------ trace, diag, diag_embed
@defop("trace", composite=True)
def trace(input):
    if input.ndim != 2:
        raise ShapeError(f"trace: expected a 2-d tensor (a matrix), got shape {tuple(input.shape)}; for batches use "
                         f"x.diagonal(dim1=-2, dim2=-1).sum(-1)")
    return V.sum(V.diagonal(input))


def _embed_shape(shape, offset, dim1, dim2):
    nd = len(shape) + 1
    d1, d2 = wrap_dim("diag_embed", dim1, nd), wrap_dim("diag_embed", dim2, nd)
    if d1 == d2:
        raise ShapeError(f"diag_embed: dim1 and dim2 cannot be identical, got {dim1} and {dim2}")
    n = (shape[-1] if shape else 1) + abs(int(offset))
    rest = list(shape[:-1])
    out = []
    for i in range(nd):
        out.append(n if i in (d1, d2) else rest.pop(0))
    return tuple(out), d1, d2


@defop("diag_embed")
def diag_embed(input, offset=0, dim1=-2, dim2=-1):
    """A tensor whose diagonals (``offset``, between dims ``dim1`` and ``dim2``) hold the last dim of input."""
    from .shape import _diag_view
    if input.ndim == 0:
        raise ShapeError("diag_embed: expected a tensor with at least 1 dim, got a 0-d tensor; use x.reshape(1)")
    shape, d1, d2 = _embed_shape(tuple(input.shape), offset, dim1, dim2)
    xp = xp_of(input)
    out = xp.zeros(shape, dtype=input.dtype)
    _diag_view(xp, out, int(offset), d1, d2)[...] = input
    return out


@diag_embed.def_backward
def _(ctx, g):
    from .reduce_util import arg
    a = ctx.args[0]
    offset, dim1, dim2 = arg(ctx, 1, "offset", 0), arg(ctx, 2, "dim1", -2), arg(ctx, 3, "dim2", -1)
    _, d1, d2 = _embed_shape(tuple(a.shape), offset, dim1, dim2)
    return V.contiguous(V.diagonal(g, offset, d1, d2))


@defop("diag", composite=True)
def diag(input, diagonal=0):
    """1-d -> the 2-d matrix with input on diagonal ``diagonal``; 2-d -> a copy of that diagonal (1-d)."""
    if input.ndim == 1:
        return V.diag_embed(input, diagonal, 0, 1)
    if input.ndim == 2:
        return V.clone(V.diagonal(input, diagonal))
    raise ShapeError(f"diag: expected a 1-d or 2-d tensor, got shape {tuple(input.shape)}; use diag_embed or "
                     f"diagonal for batches")

