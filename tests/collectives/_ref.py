"""Shared helpers for the collectives tests: per-rank inputs every rank can recompute, and numpy
float64 references."""
from __future__ import annotations

import numpy as np

import vibetensor as vt

DTYPES = ["float16", "bfloat16", "float32", "float64", "int32", "int64", "uint8", "bool"]
OPS = ["sum", "product", "min", "max", "avg"]
SIZES = [0, 1, 2, 7, 13, 101, 1009]   # empty, one, primes, not divisible by 2/4


def ops_for(dtype):
    return [o for o in OPS if o != "avg" or dtype.startswith(("float", "bfloat"))]


def inp(rank, n, dtype, op, seed=0):
    """Rank ``rank``'s input: small values (exact in every dtype), positive for product."""
    rng = np.random.default_rng(seed * 7919 + rank * 104729 + n)
    if dtype == "bool":
        return rng.integers(0, 2, n).astype(bool)
    if op == "product":
        v = rng.integers(1, 3, n)
    elif dtype == "uint8":
        v = rng.integers(0, 9, n)
    else:
        v = rng.integers(-4, 5, n)
    return v.astype(vt.core.dtype.as_dtype(dtype).np)


def ref(arrays, op):
    a = np.stack([x.astype(np.float64) for x in arrays])
    if op == "sum":
        r = a.sum(0)
    elif op == "product":
        r = a.prod(0)
    elif op == "min":
        r = a.min(0)
    elif op == "max":
        r = a.max(0)
    else:
        r = a.mean(0)
    if arrays[0].dtype == np.bool_:
        r = r != 0
    return r


def tol(dtype):
    return {"float16": 2e-3, "bfloat16": 1e-2}.get(dtype, 1e-6)


def check(got, want, dtype, what=""):
    g = np.asarray(got).astype(np.float64)
    w = np.asarray(want).astype(np.float64)
    assert g.shape == w.shape, f"{what}: shape {g.shape} != {w.shape}"
    np.testing.assert_allclose(g, w, rtol=tol(dtype), atol=tol(dtype), err_msg=what)
