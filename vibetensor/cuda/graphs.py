"""CUDA Graphs: capture a region of vt ops once, replay it with one launch.

Capture runs on a side stream with a private memory pool (as PyTorch does): blocks allocated and
freed inside the capture are reused only by the graph, so replays never scribble over memory that
was handed out after capture. Host syncs (``.item()``, ``.numpy()``, printing a CUDA tensor) cannot be
captured: the error says so.
"""
from __future__ import annotations

import threading

from ..core import backend as _be
from .streams import Stream, current_stream

_capturing = threading.local()


def is_current_stream_capturing() -> bool:
    return bool(getattr(_capturing, "on", False))


class CUDAGraph:
    def __init__(self):
        self._graph = None
        self._pool = None
        self._stream = None

    def capture_begin(self, pool=None):
        cp = _be.cupy_module()
        self._pool = pool if pool is not None else cp.cuda.MemoryPool()
        self._stream = Stream()
        self._stream.wait_stream(current_stream())
        self._stream.__enter__()
        self._alloc_ctx = cp.cuda.using_allocator(self._pool.malloc)
        self._alloc_ctx.__enter__()
        _capturing.on = True
        self._stream._s.begin_capture()

    def capture_end(self):
        try:
            self._graph = self._stream._s.end_capture()
        finally:
            _capturing.on = False
            self._alloc_ctx.__exit__(None, None, None)
            self._stream.__exit__(None, None, None)
        current_stream().wait_stream(self._stream)

    def replay(self):
        if self._graph is None:
            raise RuntimeError("CUDAGraph.replay() before a capture: capture with `with vt.cuda.graph(g): ...` first")
        self._graph.launch(current_stream()._s)

    def reset(self):
        self._graph = None
        self._pool = None

    def pool(self):
        return self._pool


_SYNC_HINT = ("a host synchronisation or an unsupported call happened while capturing a CUDA graph "
              "(e.g. .item(), .numpy(), .tolist(), print of a CUDA tensor, a CPU<->GPU copy, or a "
              "blocking allocation); move it outside the captured region")


class graph:
    """``with vt.cuda.graph(g): out = step(static_in)`` captures into ``g``; then ``g.replay()``."""

    def __init__(self, cuda_graph: CUDAGraph, pool=None, stream=None):
        self.g = cuda_graph
        self.pool = pool

    def __enter__(self):
        _be.cupy_module().cuda.Device().synchronize()
        self.g.capture_begin(self.pool)
        return self.g

    def __exit__(self, exc_type, exc, tb):
        try:
            self.g.capture_end()
        except Exception as e:
            if exc is None:
                raise RuntimeError(f"CUDA graph capture failed: {e}; {_SYNC_HINT}") from e
        if exc is not None and _is_capture_error(exc):
            raise RuntimeError(f"CUDA graph capture failed: {exc}; {_SYNC_HINT}") from exc
        return False


def _is_capture_error(exc) -> bool:
    s = str(exc)
    return any(k in s for k in ("Captur", "captur", "not permitted"))


def make_graphed_step(step, *static_args, warmup: int = 3):
    """Capture a whole training step (forward, backward, optimizer step) into one graph.

    ``step(*static_args)`` must read its inputs only from ``static_args`` (fixed-shape CUDA tensors)
    and avoid host syncs. Warm-up iterations run on a side stream first so optimizer state and
    cached kernels exist before capture. Returns ``run(*new_args) -> step's output``: it copies the
    new inputs into the static buffers and replays. Notes: Python-side values computed during
    capture (a learning rate from a scheduler, an optimizer step count used on the host) are baked
    into the graph; random ops replay the same random numbers.
    """
    side = Stream()
    side.wait_stream(current_stream())
    with side:
        for _ in range(warmup):
            step(*static_args)
    current_stream().wait_stream(side)
    g = CUDAGraph()
    with graph(g):
        static_out = step(*static_args)

    def run(*args):
        from ..core.grad_mode import no_grad
        if args:
            if len(args) != len(static_args):
                raise ValueError(f"graphed step takes {len(static_args)} inputs, got {len(args)}")
            with no_grad():
                for dst, src in zip(static_args, args):
                    if src is not dst:
                        dst.copy_(src)
        g.replay()
        return static_out

    run.graph = g
    return run
