"""The caching allocator: CuPy's MemoryPool, observed and capped.

vibetensor installs one allocator function for CuPy that (1) allocates from the device's pool,
(2) tracks the peak of bytes in use, (3) on failure runs the GC ladder -- free cached blocks,
collect garbage, retry -- and then raises OutOfMemoryError with the request and the figures, and
records an OOM event. Blocks and segments for ``memory_snapshot()`` come from a CuPy memory hook
that is active only while history recording is on (it costs a Python call per allocation).
"""
from __future__ import annotations

import gc
import threading
import traceback

from ..core import backend as _be

_state = threading.local()
_peak: dict = {}
_counts: dict = {}
_installed = False
_pool_malloc = _pool_used = None   # the default pool's bound methods, set by install()
_OOM = MemoryError
_recording = False
_history: dict = {}     # device -> {ptr: block}
_segments: dict = {}    # device -> {ptr: segment}


class OutOfMemoryError(RuntimeError):
    """CUDA out of memory after freeing cached blocks; the message carries the allocator's figures."""


def _cp():
    return _be.cupy_module()


def _pool():
    return _cp().get_default_memory_pool()


def _malloc(size):
    # the per-allocation hot path: one pool call, one counter, one peak compare (no per-call lookups)
    try:
        mem = _pool_malloc(size)
    except _OOM:
        mem = _malloc_ladder(size)
    dev = mem.device_id
    c = _counts.get(dev)
    if c is None:
        c = _counts[dev] = [0, 0, 0]
    c[0] += 1
    used = _pool_used()
    if used > _peak.get(dev, 0):
        _peak[dev] = used
    return mem


def _malloc_ladder(size):
    """Allocation failed: free cached blocks and garbage, retry, else raise OutOfMemoryError."""
    cp = _cp()
    pool = cp.get_default_memory_pool()
    dev = cp.cuda.runtime.getDevice()
    _counts.setdefault(dev, [0, 0, 0])[2] += 1
    pool.free_all_blocks()   # rung 1: give cached blocks back to the driver
    gc.collect()             # rung 2: tensors only kept alive by reference cycles
    pool.free_all_blocks()
    try:
        return pool.malloc(size)
    except _OOM:
        _raise_oom(size, dev)


def _raise_oom(size, dev):
    from .. import observe
    pool = _pool()
    free, total = _cp().cuda.runtime.memGetInfo()
    limit = pool.get_limit()
    observe.record(observe.EventKind.OOM, "cuda_malloc", nbytes=int(size), device=f"cuda:{dev}")
    observe.counter_add("cuda.oom")
    cap = f", per-process cap {_fmt(limit)}" if limit else ""
    raise OutOfMemoryError(
        f"CUDA out of memory on cuda:{dev}: tried to allocate {_fmt(size)}; {_fmt(pool.used_bytes())} allocated "
        f"by tensors, {_fmt(pool.total_bytes())} reserved by the caching allocator{cap}; device has "
        f"{_fmt(free)} free of {_fmt(total)}. Free tensors you no longer need, reduce the batch size, or raise "
        f"set_per_process_memory_fraction.") from None


def _fmt(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.2f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024


def install():
    """Route CuPy allocations through the observed allocator (idempotent; called on first CUDA use)."""
    global _installed
    if _installed:
        return
    global _pool_malloc, _pool_used, _OOM
    cp = _cp()
    pool = cp.get_default_memory_pool()
    _pool_malloc, _pool_used, _OOM = pool.malloc, pool.used_bytes, cp.cuda.memory.OutOfMemoryError
    cp.cuda.set_allocator(_malloc)
    _installed = True


def _dev(device):
    from .streams import _device_index
    return _device_index(device)


def _with_device(device, fn):
    cp = _cp()
    with cp.cuda.Device(_dev(device)):
        return fn(cp.get_default_memory_pool())


def memory_allocated(device=None) -> int:
    return _with_device(device, lambda p: int(p.used_bytes()))


def memory_reserved(device=None) -> int:
    return _with_device(device, lambda p: int(p.total_bytes()))


def max_memory_allocated(device=None) -> int:
    d = _dev(device)
    return max(_peak.get(d, 0), memory_allocated(d))


def reset_peak_memory_stats(device=None):
    d = _dev(device)
    _peak[d] = memory_allocated(d)


def memory_stats(device=None) -> dict:
    d = _dev(device)
    c = _counts.get(d, [0, 0, 0])
    pool = _with_device(d, lambda p: p)
    return {
        "allocated_bytes.all.current": int(pool.used_bytes()),
        "allocated_bytes.all.peak": max_memory_allocated(d),
        "reserved_bytes.all.current": int(pool.total_bytes()),
        "inactive_split_bytes.all.current": int(pool.free_bytes()),
        "num_alloc_retries": c[2],
        "num_ooms": int(__import__("vibetensor").observe.stats("cuda.oom").get("cuda.oom", 0)),
        "num_allocs": c[0],
        "limit_bytes": int(pool.get_limit()),
    }


def set_per_process_memory_fraction(fraction: float, device=None):
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"set_per_process_memory_fraction: fraction must be in [0, 1], got {fraction}")
    _with_device(device, lambda p: p.set_limit(fraction=fraction))


def empty_cache():
    _pool().free_all_blocks()


class _Hook:
    """CuPy memory hook recording blocks (pool mallocs) and segments (cudaMalloc) with stacks."""

    name = "vt_history"

    def __new__(cls):
        base = _cp().cuda.memory_hook.MemoryHook

        class H(base):
            name = "vt_history"

            def alloc_postprocess(self, **kw):
                _segments.setdefault(kw["device_id"], {})[kw["mem_ptr"]] = {
                    "address": kw["mem_ptr"], "total_size": kw["mem_size"], "device": kw["device_id"]}

            def malloc_postprocess(self, **kw):
                s = _cp().cuda.get_current_stream()
                _history.setdefault(kw["device_id"], {})[kw["mem_ptr"]] = {
                    "address": kw["mem_ptr"], "size": kw["mem_size"], "requested_size": kw["size"],
                    "stream": s.ptr, "state": "active_allocated",
                    "frames": traceback.format_stack(limit=12)[:-3]}

            def free_postprocess(self, **kw):
                _history.get(kw["device_id"], {}).pop(kw["mem_ptr"], None)

        return H()


_hook = None


def _record_memory_history(enabled: bool = True):
    """Record every live block with its size, stream and allocation stack (this thread)."""
    global _hook, _recording
    if enabled and _hook is None:
        _hook = _Hook()
        _hook.__enter__()
        _recording = True
    elif not enabled and _hook is not None:
        _hook.__exit__(None, None, None)
        _hook = None
        _recording = False


def memory_snapshot() -> dict:
    """Segments and blocks (with streams and allocation stacks while history recording is on)."""
    out = {"segments": [], "blocks": [], "recording": _recording, "devices": {}}
    cp = _cp()
    for d in range(cp.cuda.runtime.getDeviceCount()):
        with cp.cuda.Device(d):
            p = cp.get_default_memory_pool()
            out["devices"][d] = {"allocated": int(p.used_bytes()), "reserved": int(p.total_bytes()),
                                 "cached_free": int(p.free_bytes()), "free_blocks": int(p.n_free_blocks())}
    for d, segs in _segments.items():
        out["segments"].extend(dict(s) for s in segs.values())
    for d, blocks in _history.items():
        out["blocks"].extend(dict(b, device=d) for b in blocks.values())
    return out
