"""The side channel: a duplicated MPI communicator beside each group's data communicator.

* "reached": a rank that has waited on collective #N for a while posts a tiny nonblocking message
  "I reached #N" to every other rank (eager, so it completes without the receiver). On timeout a
  rank drains these messages: the ranks that never said they reached #N are the missing ones.
  Fast collectives post nothing, so this costs one Iprobe per collective.
* debug fingerprints (VT_DEBUG_COLLECTIVES=1): a nonblocking all-gather of (seq, collective, reduce
  op, dtype, root, shape) before each collective; mismatches name the ranks and their values.
"""
from __future__ import annotations

import time

import numpy as np

from .errors import CollectiveMismatchError
from .work import poll

REACHED_TAG = 9001
FP_LEN = 16
MAX_DIMS = 8

COLL_CODES = {"all_reduce": 1, "broadcast": 2, "all_gather": 3, "reduce_scatter": 4, "reduce": 5, "barrier": 6,
              "all_gather_into_tensor": 7, "reduce_scatter_tensor": 8}
_COLL_NAMES = {v: k for k, v in COLL_CODES.items()}
_OP_CODES = {None: 0, "sum": 1, "product": 2, "min": 3, "max": 4, "avg": 5}
_OP_NAMES = {v: k for k, v in _OP_CODES.items()}


class SideChannel:
    def __init__(self, comm):
        from mpi4py import MPI  # noqa: PLC0415
        self.MPI = MPI
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.last_seen: dict = {}
        self._sends = []
        self._buf = np.zeros(1, dtype=np.int64)

    def reached(self, seq: int):
        """Tell every other rank that this one waits in collective #seq."""
        self._sends = [r for r in self._sends if not r.Test()]
        msg = np.array([seq], dtype=np.int64)
        for r in range(self.size):
            if r != self.rank:
                self._sends.append(self.comm.Isend([msg, self.MPI.INT64_T], dest=r, tag=REACHED_TAG))

    def drain(self):
        st = self.MPI.Status()
        while self.comm.Iprobe(source=self.MPI.ANY_SOURCE, tag=REACHED_TAG, status=st):
            src = st.Get_source()
            self.comm.Recv([self._buf, self.MPI.INT64_T], source=src, tag=REACHED_TAG)
            self.last_seen[src] = max(self.last_seen.get(src, -1), int(self._buf[0]))

    def missing(self, seq: int, linger: float = 0.2):
        """Ranks that did not report reaching #seq (after a short linger for late reports)."""
        end = time.monotonic() + linger
        while True:
            self.drain()
            miss = [r for r in range(self.size) if r != self.rank and self.last_seen.get(r, -1) < seq]
            if not miss or time.monotonic() >= end:
                return miss, dict(self.last_seen)
            time.sleep(0.01)

    # ------------------------------------------------------------------ debug fingerprints
    def check_fingerprint(self, fp: np.ndarray, deadline: float, group_name: str, on_timeout):
        out = np.zeros((self.size, FP_LEN), dtype=np.int64)
        req = self.comm.Iallgather([fp, self.MPI.INT64_T], [out, self.MPI.INT64_T])
        if not poll(req.Test, deadline):
            on_timeout()
        bad = [r for r in range(self.size) if not np.array_equal(out[r], out[0])]
        if bad:
            lines = [f"  rank {r}: {describe(out[r])}" for r in range(self.size)]
            raise CollectiveMismatchError(
                f"VT_DEBUG_COLLECTIVES: ranks {bad} called a different collective than rank 0 in group "
                f"{group_name!r}:\n" + "\n".join(lines) +
                "\nEvery rank must issue the same collectives in the same order with the same shapes and dtypes.")


def fingerprint(seq, coll, op=None, dtype=None, root=-1, shape=()) -> np.ndarray:
    from .types import dtype_code
    fp = np.zeros(FP_LEN, dtype=np.int64)
    shape = tuple(shape)
    fp[0] = seq
    fp[1] = COLL_CODES[coll]
    fp[2] = _OP_CODES[op.value if op is not None else None]
    fp[3] = -1 if dtype is None else dtype_code(dtype)
    fp[4] = -1 if root is None else root
    fp[5] = len(shape)
    fp[6] = int(np.prod(shape)) if shape else (0 if dtype is None else 1)
    for i, s in enumerate(shape[:MAX_DIMS]):
        fp[7 + i] = s
    return fp


def describe(fp) -> str:
    from .types import SUPPORTED
    nd = int(fp[5])
    shape = tuple(int(x) for x in fp[7:7 + min(nd, MAX_DIMS)])
    dt = "-" if fp[3] < 0 else SUPPORTED[int(fp[3])].name
    return (f"#{int(fp[0])} {_COLL_NAMES.get(int(fp[1]), '?')} op={_OP_NAMES.get(int(fp[2]))} dtype={dt} "
            f"root={int(fp[4])} shape={shape}")
