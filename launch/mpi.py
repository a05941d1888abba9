"""Finding the MPI launcher and building its command line (MPICH/Hydra, Open MPI, SLURM srun).

Pure functions over a ``LaunchConfig`` so the command for every flavour is testable without that MPI.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from enum import Enum

INSTALL_HINT = ("install the MPI extra into this Python: pip install 'vibetensor[mpi]' (mpi4py + the mpich "
                "wheel, which brings mpiexec), or a system MPI (apt install mpich / openmpi-bin)")


class Flavor(str, Enum):
    MPICH = "mpich"      # MPICH / Hydra (the mpich wheel, Intel MPI, MVAPICH)
    OPENMPI = "openmpi"
    SLURM = "slurm"      # srun inside an allocation
    NONE = "none"        # --single-process / one rank without MPI


class LaunchError(RuntimeError):
    """Bad launcher input or environment; the message says how to fix it."""


@dataclass(frozen=True)
class MPILauncher:
    path: str
    flavor: Flavor
    version: str


@dataclass(frozen=True)
class LaunchConfig:
    nproc_per_node: int
    script_argv: tuple[str, ...]        # script + its args ("--print-env" handled by the bootstrap)
    hosts: tuple[str, ...] = ()
    hostfile: str | None = None
    nnodes: int = 1
    max_restarts: int = 0
    log_dir: str | None = None
    device: str = "auto"
    single_process: bool = False
    print_env: bool = False
    allow_oversubscribe_gpus: bool = False
    mpi_args: tuple[str, ...] = ()      # --mpi-arg passthrough, verbatim

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes

    @property
    def multi_host(self) -> bool:
        return bool(self.hosts or self.hostfile) or self.nnodes > 1


def candidate_paths(explicit: str | None = None) -> list[str]:
    """mpiexec next to this Python (the mpich wheel in the venv) first, then PATH."""
    if explicit:
        return [explicit]
    out = []
    bindir = os.path.dirname(sys.executable)
    for name in ("mpiexec", "mpirun"):
        p = shutil.which(name, path=bindir)
        if p:
            out.append(p)
    for name in ("mpiexec", "mpirun"):
        p = shutil.which(name)
        if p and p not in out:
            out.append(p)
    return out


def detect_flavor(version_text: str) -> Flavor | None:
    t = version_text.lower()
    if "open mpi" in t or "openrte" in t or "open rte" in t or "prrte" in t:
        return Flavor.OPENMPI
    if "hydra" in t or "mpich" in t or "intel(r) mpi" in t or "mvapich" in t:
        return Flavor.MPICH
    return None


def find_mpi(explicit: str | None = None) -> MPILauncher:
    paths = candidate_paths(explicit)
    if not paths:
        raise LaunchError(f"no MPI launcher found (looked for mpiexec/mpirun next to {sys.executable} and on "
                          f"PATH); a job of more than one rank needs MPI: {INSTALL_HINT}")
    errors = []
    for p in paths:
        if not (os.path.isfile(p) and os.access(p, os.X_OK)):
            errors.append(f"{p}: not an executable file")
            continue
        try:
            r = subprocess.run([p, "--version"], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired) as e:
            errors.append(f"{p}: {e}")
            continue
        text = r.stdout + r.stderr
        flavor = detect_flavor(text)
        if flavor is None:
            errors.append(f"{p}: unrecognised MPI ({text.strip().splitlines()[:1]})")
            continue
        return MPILauncher(p, flavor, text.strip().splitlines()[0] if text.strip() else "")
    raise LaunchError("no usable MPI launcher: " + "; ".join(errors) + f". {INSTALL_HINT}")


def find_srun() -> MPILauncher | None:
    """srun when inside a SLURM allocation (SLURM_JOB_ID set) and srun exists."""
    if not os.environ.get("SLURM_JOB_ID"):
        return None
    p = shutil.which("srun")
    return MPILauncher(p, Flavor.SLURM, "srun") if p else None


def count_hostfile_hosts(path: str) -> int:
    try:
        with open(path) as f:
            lines = [ln.split("#", 1)[0].strip() for ln in f]
    except OSError as e:
        raise LaunchError(f"--hostfile {path!r} cannot be read: {e}") from None
    n = len({ln.split()[0].split(":")[0] for ln in lines if ln})
    if n == 0:
        raise LaunchError(f"--hostfile {path!r} names no hosts")
    return n


def rank_command(cfg: LaunchConfig, python: str = sys.executable) -> list[str]:
    """What each rank runs."""
    cmd = [python, "-u", "-m", "launch.bootstrap"]
    if cfg.print_env:
        cmd.append("--print-env")
    return cmd + list(cfg.script_argv)


def build_command(mpi: MPILauncher, cfg: LaunchConfig, env_names: list[str],
                  cpu_count: int | None = None, is_root: bool | None = None) -> list[str]:
    """The full launcher command line for ``mpi`` (env_names: variables Open MPI must forward with -x)."""
    cpu_count = (os.cpu_count() or 1) if cpu_count is None else cpu_count
    is_root = (os.geteuid() == 0) if is_root is None else is_root
    n, ppn = cfg.world_size, cfg.nproc_per_node
    tag = cfg.multi_host  # single host: ranks write their output files; several: the MPI tags lines
    if mpi.flavor is Flavor.MPICH:
        cmd = [mpi.path, "-n", str(n), "-bind-to", "none"]
        if cfg.hosts:
            cmd += ["-hosts", ",".join(cfg.hosts), "-ppn", str(ppn)]
        elif cfg.hostfile:
            cmd += ["-f", cfg.hostfile, "-ppn", str(ppn)]
        if tag:
            cmd.append("-prepend-rank")
    elif mpi.flavor is Flavor.OPENMPI:
        cmd = [mpi.path, "-n", str(n), "--bind-to", "none"]
        if is_root:
            cmd.append("--allow-run-as-root")
        if cfg.hosts:
            cmd += ["--host", ",".join(f"{h}:{ppn}" for h in cfg.hosts), "--map-by", f"ppr:{ppn}:node"]
        elif cfg.hostfile:
            cmd += ["--hostfile", cfg.hostfile, "--map-by", f"ppr:{ppn}:node"]
        if ppn > cpu_count:
            cmd.append("--oversubscribe")
        if tag:
            cmd.append("--tag-output")
        for name in env_names:
            cmd += ["-x", name]
    elif mpi.flavor is Flavor.SLURM:
        cmd = [mpi.path, f"--ntasks={n}", f"--ntasks-per-node={ppn}", f"--nodes={cfg.nnodes}",
               "--kill-on-bad-exit=1", "--cpu-bind=none", "--label"]
    else:
        raise LaunchError(f"cannot build an MPI command for {mpi.flavor}")
    return cmd + list(cfg.mpi_args) + rank_command(cfg)


def launcher_env(mpi: MPILauncher | None, is_root: bool | None = None) -> dict[str, str]:
    """Extra variables the MPI itself needs."""
    is_root = (os.geteuid() == 0) if is_root is None else is_root
    if mpi is not None and mpi.flavor is Flavor.OPENMPI and is_root:
        return {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    return {}


# Output tags each MPI puts in front of a rank's lines when asked (multi-host mode).
_TAG_PATTERNS = (
    re.compile(r"^\[(\d+)\] ?"),                       # MPICH -prepend-rank
    re.compile(r"^\[\d+,(\d+)\]<std(?:out|err)>: ?"),  # Open MPI --tag-output
    re.compile(r"^\s*(\d+): ?"),                       # srun --label
)


def split_tag(line: str) -> tuple[int | None, str]:
    """(rank, text) of an MPI-tagged output line; (None, line) when untagged."""
    for pat in _TAG_PATTERNS:
        m = pat.match(line)
        if m:
            return int(m.group(1)), line[m.end():]
    return None, line
