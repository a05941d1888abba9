"""all_reduce(algorithm="auto") crossovers: use our ring from this many bytes up, per transport and
world size. Measured with benchmarks/allreduce.py (BENCHMARKS.md, "Collectives" section); world
sizes not measured use the nearest measured one. ``None``: never pick the ring automatically."""
from __future__ import annotations

RING_MIN_BYTES = {
    "mpi": {2: None, 4: None},
    "local": {2: None, 4: None},
}


def pick(transport_name: str, world: int, nbytes: int) -> str:
    if world <= 1:
        return "native"
    table = RING_MIN_BYTES.get(transport_name)
    if not table:
        return "ring" if transport_name == "ipc" else "native"
    key = min(table, key=lambda w: abs(w - world))
    thr = table[key]
    return "ring" if thr is not None and nbytes >= thr else "native"
