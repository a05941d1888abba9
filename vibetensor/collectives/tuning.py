"""all_reduce(algorithm="auto") crossovers: use our ring from this many bytes up, per transport and
world size. Measured with benchmarks/allreduce.py (BENCHMARKS.md, "Collectives" section); world
sizes not measured use the nearest measured one. ``None``: never pick the ring automatically."""
from __future__ import annotations

RING_MIN_BYTES = {
    # CPU, one host (the ring rides transport/shm.py), 2-core VM, 2026-11-25: ring beats our
    # MPI_Iallreduce path from 256 KiB at 2 ranks (64 KiB: 45 vs 43 us; 256 KiB: 66-68 vs 69-73 us;
    # 1 MiB: 191 vs 231 us) and from 16 KiB at 4 ranks (oversubscribed: 4 ranks on 2 cores, both at
    # scheduler-quantum scale; a later run had native ahead below 16 MiB -- too noisy to move it on).
    "shm": {2: 256 << 10, 4: 16 << 10},
    # MPI groups spanning hosts (the ring over MPI point-to-point): not measured yet -> native
    "mpi": {2: None, 4: None},
    # virtual CPU devices in one process: the direct reduction (no transfers) wins at every size
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
