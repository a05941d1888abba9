"""The one rank/world resolver, shared by vt-launch's bootstrap and ``vt.collectives``.

    from vibetensor.rank_env import resolve, RankInfo
    info = resolve()            # RankInfo(rank, local_rank, world_size, local_world_size, source, launcher)

Precedence (the first source that names a rank and a world size wins; its local rank and local world
size must come from the same launcher, or from the MPI shared-memory split -- never from the global rank):

1. ``VT_RANK`` / ``VT_LOCAL_RANK`` / ``VT_WORLD_SIZE`` / ``VT_LOCAL_WORLD_SIZE`` -- exported by the
   vt-launch bootstrap (and by ``--single-process``); the launcher scrubs them from the environment it
   hands to ``mpiexec``, so they never leak from an outer job.                      launcher "vt-launch"
2. Open MPI: ``OMPI_COMM_WORLD_RANK`` / ``_SIZE`` / ``_LOCAL_RANK`` / ``_LOCAL_SIZE``.  launcher "openmpi"
3. MPICH / Hydra (and Intel MPI): ``PMI_RANK`` / ``PMI_SIZE``, ``MPI_LOCALRANKID`` / ``MPI_LOCALNRANKS``.
                                                                                    launcher "mpich"
4. SLURM job steps (``srun``; needs ``SLURM_STEP_ID`` so a batch script's single process is not taken
   for rank 0 of N): ``SLURM_PROCID`` / ``SLURM_NTASKS`` / ``SLURM_LOCALID`` and
   ``SLURM_NTASKS_PER_NODE``, else the node's entry of ``SLURM_TASKS_PER_NODE`` (``"2(x3),1"``).
                                                                                    launcher "slurm"
5. torchrun / ``env://``: ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` / ``LOCAL_WORLD_SIZE``.
                                                                                    launcher "torchrun"
6. mpi4py's ``COMM_WORLD`` -- consulted only when ``mpi4py.MPI`` is already imported or
   ``require_mpi=True`` (importing it initialises MPI); local rank and size from
   ``COMM_WORLD.Split_type(COMM_TYPE_SHARED)``.                                    launcher "mpi4py"
7. A single process: rank 0 of 1.                                                   launcher None

A multi-rank source without a local rank falls back to the MPI shared-memory split when MPI is the
launcher (or mpi4py is imported / required); otherwise ``RankEnvError`` says which variable to set.

``maybe_install_import_hooks()`` is the cheap import-time bootstrap ``import vibetensor`` calls: under
``mpiexec``/``srun`` without vt-launch it exports the torchrun variables and installs the failure hook
(error file + job abort). It imports nothing heavy unless such a launcher is present.
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass

__all__ = ["RankInfo", "RankEnvError", "resolve", "export_env", "maybe_install_import_hooks"]


class RankEnvError(RuntimeError):
    """The environment names a multi-rank job but not enough to place this process in it."""


@dataclass(frozen=True)
class RankInfo:
    rank: int
    local_rank: int
    world_size: int
    local_world_size: int
    source: str            # where each value came from: "rank=PMI_RANK world_size=PMI_SIZE ..."
    launcher: str | None   # vt-launch | openmpi | mpich | slurm | torchrun | mpi4py | None

    @property
    def sources(self) -> dict[str, str]:
        """``source`` as a dict: field -> variable (or mpi4py call) it came from."""
        return dict(part.split("=", 1) for part in self.source.split())

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


# (launcher, rank var, world var, local rank var, local world var)
_ENV_SOURCES = (
    ("vt-launch", "VT_RANK", "VT_WORLD_SIZE", "VT_LOCAL_RANK", "VT_LOCAL_WORLD_SIZE"),
    ("openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
     "OMPI_COMM_WORLD_LOCAL_SIZE"),
    ("mpich", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"),
    ("slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE"),
    ("torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"),
)
_MPI_LAUNCHERS = ("openmpi", "mpich", "slurm")

# Variables whose presence means "started by an MPI / SLURM launcher" (import-time bootstrap trigger).
LAUNCHER_MARKERS = ("OMPI_COMM_WORLD_RANK", "PMI_RANK")


def _int_var(env, name: str) -> int | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise RankEnvError(f"{name}={raw!r} is not an integer; the launcher set it wrongly, or unset it") from None


def _slurm_tasks_on_node(env) -> int | None:
    """This node's task count from SLURM_TASKS_PER_NODE ("2(x3),1") and SLURM_NODEID."""
    spec, node = env.get("SLURM_TASKS_PER_NODE"), _int_var(env, "SLURM_NODEID")
    if not spec or node is None:
        return None
    counts: list[int] = []
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", part)
        if not m:
            return None
        counts += [int(m.group(1))] * int(m.group(2) or 1)
    return counts[node] if node < len(counts) else None


def _mpi_module(require: bool):
    """mpi4py.MPI if already imported (or importable and required); None otherwise."""
    mod = sys.modules.get("mpi4py.MPI")
    if mod is not None or not require:
        return mod
    try:
        from mpi4py import MPI  # noqa: PLC0415 - initialises MPI; only on request
    except ImportError as e:
        raise RankEnvError(f"require_mpi=True but mpi4py is not importable ({e}); "
                           "install the MPI extra: pip install 'vibetensor[mpi]'") from None
    return MPI


def _mpi_local(MPI) -> tuple[int, int]:
    node = MPI.COMM_WORLD.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        return node.Get_rank(), node.Get_size()
    finally:
        node.Free()


def resolve(require_mpi: bool = False, environ=None) -> RankInfo:
    """Where this process sits in the job; see the module docstring for the precedence."""
    env = os.environ if environ is None else environ
    for launcher, rv, wv, lrv, lwv in _ENV_SOURCES:
        if launcher == "slurm" and not (env.get("SLURM_STEP_ID") or env.get("SLURM_STEPID")):
            continue  # a batch script is one process even though SLURM_PROCID/NTASKS are set
        rank, world = _int_var(env, rv), _int_var(env, wv)
        if rank is None or world is None:
            continue
        if world < 1 or not 0 <= rank < world:
            raise RankEnvError(f"{rv}={rank} and {wv}={world} are inconsistent: need 0 <= rank < world_size")
        src = {"rank": rv, "world_size": wv}
        local, lworld = _int_var(env, lrv), _int_var(env, lwv)
        if local is not None:
            src["local_rank"] = lrv
        if lworld is not None:
            src["local_world_size"] = lwv
        elif launcher == "slurm" and (lworld := _slurm_tasks_on_node(env)) is not None:
            src["local_world_size"] = "SLURM_TASKS_PER_NODE"
        if world == 1:
            local, lworld = 0 if local is None else local, 1 if lworld is None else lworld
            src.setdefault("local_rank", "single-rank")
            src.setdefault("local_world_size", "single-rank")
        if local is None or lworld is None:
            MPI = _mpi_module(require_mpi or launcher in _MPI_LAUNCHERS and _mpi4py_available())
            if MPI is None:
                missing = lrv if local is None else lwv
                raise RankEnvError(
                    f"{launcher} names rank {rank} of {world} but not the local rank/size ({missing} is unset), "
                    f"and MPI's shared-memory split is not available ({launcher} is not an MPI launcher and mpi4py "
                    f"is not imported); set {missing}, or start the job with vt-launch. The local rank is never "
                    "guessed from the global rank.")
            mlocal, mlworld = _mpi_local(MPI)
            if local is None:
                local, src["local_rank"] = mlocal, "mpi4py.Split_type(COMM_TYPE_SHARED)"
            if lworld is None:
                lworld, src["local_world_size"] = mlworld, "mpi4py.Split_type(COMM_TYPE_SHARED)"
        if lworld < 1 or not 0 <= local < lworld or lworld > world:
            raise RankEnvError(f"local rank {local} ({src['local_rank']}) and local world size {lworld} "
                               f"({src['local_world_size']}) are inconsistent with world size {world}")
        return RankInfo(rank, local, world, lworld, _fmt(src), launcher)
    MPI = _mpi_module(require_mpi)
    if MPI is not None:
        if not MPI.Is_initialized() or MPI.Is_finalized():
            raise RankEnvError("mpi4py.MPI is imported but MPI is not initialised (or already finalised); "
                               "import mpi4py.MPI with its default auto-initialisation")
        comm = MPI.COMM_WORLD
        local, lworld = _mpi_local(MPI)
        how = "mpi4py.Split_type(COMM_TYPE_SHARED)"
        return RankInfo(comm.Get_rank(), local, comm.Get_size(), lworld,
                        _fmt({"rank": "mpi4py.COMM_WORLD", "world_size": "mpi4py.COMM_WORLD",
                              "local_rank": how, "local_world_size": how}), "mpi4py")
    return RankInfo(0, 0, 1, 1, _fmt(dict.fromkeys(("rank", "world_size", "local_rank", "local_world_size"),
                                                   "single-process")), None)


def _fmt(src: dict) -> str:
    order = ("rank", "local_rank", "world_size", "local_world_size")
    return " ".join(f"{k}={src[k]}" for k in order)


def _mpi4py_available() -> bool:
    import importlib.util  # noqa: PLC0415
    try:
        return importlib.util.find_spec("mpi4py") is not None
    except (ImportError, ValueError):
        return False


def export_env(info: RankInfo, environ=None) -> None:
    """Export torchrun-compatible RANK/LOCAL_RANK/WORLD_SIZE/LOCAL_WORLD_SIZE and their VT_* twins."""
    env = os.environ if environ is None else environ
    for name, val in (("RANK", info.rank), ("LOCAL_RANK", info.local_rank), ("WORLD_SIZE", info.world_size),
                      ("LOCAL_WORLD_SIZE", info.local_world_size)):
        env[name] = env["VT_" + name] = str(val)


def under_mpi_launcher(environ=None) -> bool:
    env = os.environ if environ is None else environ
    if any(m in env for m in LAUNCHER_MARKERS):
        return True
    return "SLURM_PROCID" in env and bool(env.get("SLURM_STEP_ID") or env.get("SLURM_STEPID"))


def maybe_install_import_hooks() -> bool:
    """Import-time bootstrap for scripts started by plain ``mpiexec``/``srun`` (see module docstring).

    Returns True when it installed the hooks. Cheap and import-free when there is no such launcher,
    or when vt-launch's bootstrap already ran (``VT_BOOTSTRAPPED=1``).
    """
    if os.environ.get("VT_BOOTSTRAPPED") == "1" or not under_mpi_launcher():
        return False
    try:
        info = resolve()
    except RankEnvError as e:
        print(f"vibetensor: could not resolve this rank's place in the job: {e}", file=sys.stderr)
        return False
    from .launch import failure  # noqa: PLC0415 - only under an MPI launcher
    export_env(info)
    failure.install(info)
    os.environ["VT_BOOTSTRAPPED"] = "1"
    return True
