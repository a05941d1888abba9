"""The transport interface every algorithm (our ring, the collectives) is written over.

A transport drives the ``local_ranks`` of one group that live in this process (one rank for
multi-process transports, several for ``local`` and for NCCL when one process drives several GPUs).
Every operation takes per-local-rank buffers (flat, contiguous backend arrays) and returns a
``Handle`` that the caller polls with ``test()`` until its deadline: nothing here blocks forever.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class SendRecv:
    """One local rank's half of a ring step: send ``send`` to ``dst`` and receive ``recv`` from ``src``
    (either side may be None). ``op`` set: the ring reduces the received data into its destination;
    a transport with ``reduces_on_recv`` does that itself (``recv = op(recv, data) [* scale]``),
    any other one just receives into ``recv`` (a temporary) and the ring reduces afterwards."""
    local: int
    send: object
    dst: int
    recv: object
    src: int
    op: object = None
    scale: object = None


class Handle:
    """A posted operation. ``test()`` -> True once complete (and its finish work ran)."""

    def test(self) -> bool:
        raise NotImplementedError

    def abort(self) -> None:
        """Give up (timeout): cancel what can be cancelled."""


class Done(Handle):
    """An operation that completed while it was posted."""

    def test(self):
        return True


DONE = Done()


class Chain(Handle):
    """Handles that complete in order; ``then`` runs after the inner handle completes."""

    def __init__(self, inner: Handle, then=None):
        self.inner = inner
        self.then = then
        self.finished = False

    def test(self):
        if self.finished:
            return True
        if not self.inner.test():
            return False
        if self.then is not None:
            self.then()
        self.finished = True
        return True

    def abort(self):
        self.inner.abort()


class Transport:
    name = "base"
    size: int                 # ranks in the group
    local_ranks: list         # this process's group ranks, in local order
    reduces_on_recv = False   # post_sendrecv reduces items with ``op`` into ``recv`` itself (see SendRecv)

    @property
    def n_local(self) -> int:
        return len(self.local_ranks)

    # --- point to point (the ring's only communication primitive)
    def post_sendrecv(self, items: list) -> Handle:
        raise NotImplementedError

    def reduce_into(self, local: int, dst, src, op, scale=None) -> None:
        """``dst = op(dst, src)`` (then ``* scale`` when given); on GPU one fused kernel."""
        raise NotImplementedError

    def fence(self) -> Handle:
        """Complete when everything this transport queued (the ring's last reductions) is done and
        visible to the caller's streams. Host transports are always there."""
        return DONE

    def alloc(self, local: int, n: int, np_dtype, like=None):
        raise NotImplementedError

    def devices(self) -> list:
        raise NotImplementedError

    # --- native collectives (per-local-rank flat buffers, in place where the op is)
    def native_allreduce(self, bufs, op) -> Handle:
        raise NotImplementedError(f"{self.name}: native all_reduce")

    def native_broadcast(self, bufs, root) -> Handle:
        raise NotImplementedError(f"{self.name}: native broadcast")

    def native_allgather(self, sends, recvs) -> Handle:
        raise NotImplementedError(f"{self.name}: native all_gather")

    def native_reduce_scatter(self, sends, recvs, op) -> Handle:
        raise NotImplementedError(f"{self.name}: native reduce_scatter")

    def native_reduce(self, bufs, op, root) -> Handle:
        raise NotImplementedError(f"{self.name}: native reduce")

    def native_barrier(self) -> Handle:
        raise NotImplementedError(f"{self.name}: barrier")

    def on_timeout(self) -> None:
        """The group timed out: free what the transport can (NCCL aborts its communicators)."""

    def close(self) -> None:
        pass
