"""Synthetic per-rank dumps built through the real recording API (one process plays every rank)."""
import itertools

import vibetensor.observe as obs
from vibetensor.observe import collective
from vibetensor.observe.capture import _ev


def fresh_process(rank, world):
    """Make the ring look like a new process's: empty, never cleared, sequence numbers from 0."""
    obs.clear()
    _ev._counter = itertools.count()
    _ev._last.clear()
    _ev._cleared_before = 0
    obs.set_rank(rank, world)


def run_rank(rank, world, ops, directory, group="world"):
    """Record ``ops`` as rank ``rank`` and dump. ops: list of (name, dtype, count, state) where
    state is "completed" | "timeout" | "started" | None (None: the rank never calls it)."""
    fresh_process(rank, world)
    seq = 0
    for name, dtype, count, state in ops:
        if state is None:
            continue
        tok = collective.begin(group, seq, name, op="sum", dtype=dtype, count=count, nbytes=count * 4,
                               device="cpu:0")
        if state != "started":
            collective.end(tok, state)
        seq += 1
    return obs.dump("test", str(directory))


def four_ranks_rank2_skips_5(directory):
    """Ranks 0,1,3 run all_reduce #0..#5 and time out in #5; rank 2 stops after #4."""
    for r in range(4):
        ops = [("all_reduce", "float32", 1024, "completed")] * 5
        ops.append(("all_reduce", "float32", 1024, "timeout" if r != 2 else None))
        run_rank(r, 4, ops, directory)
