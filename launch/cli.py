"""``vt-launch``: run an N-rank job through mpiexec (or srun), or one process over all local devices.

    vt-launch -n 4 train.py --lr 3e-4        # 4 ranks on this host (mpiexec from the mpich wheel or system)
    vt-launch -n auto train.py               # one rank per GPU (1 without GPUs)
    vt-launch -n 8 --hosts a,b train.py      # 8 ranks on each of hosts a and b
    vt-launch --single-process train.py      # one process, every local device (no MPI)
    vt-launch -n 2 --print-env               # what each rank resolves, and from where

Exit status: 0, the first failing rank's exit code (128+N for a signal), 2 for bad input or missing MPI,
130/143 when interrupted. Flags after the script name belong to the script.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import signal
import socket
import sys
import tempfile
import uuid

from vibetensor.launch import protocol

from .mpi import Flavor, LaunchConfig, LaunchError, build_command, count_hostfile_hosts, find_mpi, find_srun, \
    launcher_env, rank_command, INSTALL_HINT
from .output import Emitter
from .runner import Attempt, AttemptResult

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # makes `launch`/`vibetensor` importable


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vt-launch", allow_abbrev=False, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", "--nproc-per-node", "--nproc_per_node", default="1", metavar="N|auto",
                   help="ranks per host; 'auto' = one per GPU (1 without GPUs). Default 1")
    p.add_argument("--nnodes", type=int, default=None,
                   help="hosts in the job (default: from --hosts/--hostfile, the SLURM allocation, else 1)")
    p.add_argument("--hosts", default=None, help="comma-separated host list, passed to MPI")
    p.add_argument("--hostfile", default=None, help="MPI host file, passed to MPI")
    p.add_argument("--max-restarts", type=int, default=0, metavar="K",
                   help="rerun the whole job up to K times after a failure (ranks see VT_RESTART_COUNT)")
    p.add_argument("--log-dir", default=None, metavar="DIR",
                   help="also write each rank's output to DIR/rank<R>.log; error files go there too")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="cuda: one GPU per local rank (error if too few); cpu: never select a GPU; "
                        "auto: cuda when GPUs are present")
    p.add_argument("--allow-oversubscribe-gpus", action="store_true",
                   help="let more local ranks than GPUs share them (rank uses local_rank %% gpus)")
    p.add_argument("--single-process", action="store_true",
                   help="run one process over every local device (VT_SINGLE_PROCESS=1), no MPI")
    p.add_argument("--print-env", action="store_true",
                   help="run the job only to print what each rank resolved and from where, then exit")
    p.add_argument("--mpiexec", default=None, metavar="PATH", help="the MPI launcher to use (default: found)")
    p.add_argument("--no-srun", action="store_true", help="inside SLURM, use mpiexec instead of srun")
    p.add_argument("--mpi-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for mpiexec/srun, verbatim (repeatable)")
    p.add_argument("script", nargs="?", help="the Python script every rank runs")
    p.add_argument("script_args", nargs=argparse.REMAINDER, help="arguments for the script")
    return p


def _gpu_count() -> int:
    """Visible GPUs, asked only when needed (keeps CUDA out of launcher start-up)."""
    if importlib.util.find_spec("cupy") is None:
        return 0
    from vibetensor.core import backend  # noqa: PLC0415
    return backend.cuda_device_count()


def _config(ns, parser) -> LaunchConfig:
    def fail(msg):
        parser.error(msg)  # prints usage + message, exits 2

    if ns.script is None and not ns.print_env:
        fail("no script given: vt-launch [options] script.py [script args]")
    if ns.script is not None and not os.path.isfile(ns.script):
        fail(f"script {ns.script!r} not found (cwd {os.getcwd()})")
    if ns.max_restarts < 0:
        fail(f"--max-restarts must be >= 0, got {ns.max_restarts}")
    if ns.hosts and ns.hostfile:
        fail("give --hosts or --hostfile, not both")
    hosts = tuple(h.strip() for h in ns.hosts.split(",") if h.strip()) if ns.hosts else ()
    nnodes = ns.nnodes or (len(hosts) if hosts else count_hostfile_hosts(ns.hostfile) if ns.hostfile else
                           int(os.environ.get("SLURM_JOB_NUM_NODES", "1") or 1)
                           if os.environ.get("SLURM_JOB_ID") and not ns.no_srun and not ns.mpiexec else 1)
    gpus = None
    raw_n = str(ns.nproc_per_node).strip().lower()
    if raw_n == "auto":
        gpus = 0 if ns.device == "cpu" else _gpu_count()
        n = max(gpus, 1)
    else:
        try:
            n = int(raw_n)
        except ValueError:
            fail(f"--nproc-per-node must be a positive integer or 'auto', got {ns.nproc_per_node!r}")
        if n < 1:
            fail(f"--nproc-per-node must be >= 1, got {n}")
    if ns.single_process:
        if n != 1 or nnodes != 1:
            fail(f"--single-process runs one process (got --nproc-per-node {n}, {nnodes} node(s)); drop one")
    elif ns.device != "cpu":
        gpus = _gpu_count() if gpus is None else gpus
        if ns.device == "cuda" and gpus == 0:
            fail("--device cuda but no CUDA GPU is visible (CuPy + driver); use --device cpu")
        if gpus and n > gpus and not ns.allow_oversubscribe_gpus:
            fail(f"--nproc-per-node {n} exceeds the {gpus} GPU(s) of this host; use -n {gpus} (or -n auto), "
                 "--device cpu for CPU ranks, or --allow-oversubscribe-gpus to share GPUs")
    script_argv = (ns.script, *ns.script_args) if ns.script else ()
    return LaunchConfig(nproc_per_node=n, script_argv=tuple(script_argv), hosts=hosts, hostfile=ns.hostfile,
                        nnodes=nnodes, max_restarts=ns.max_restarts, log_dir=ns.log_dir, device=ns.device,
                        single_process=ns.single_process, print_env=ns.print_env,
                        allow_oversubscribe_gpus=ns.allow_oversubscribe_gpus, mpi_args=tuple(ns.mpi_arg))


def _rank_env(cfg: LaunchConfig, mpi, launch_id: str, run_dir: str, error_dir: str, restart: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in protocol.SCRUB}
    pp = env.get("PYTHONPATH", "")
    if _ROOT not in pp.split(os.pathsep):
        env["PYTHONPATH"] = _ROOT + (os.pathsep + pp if pp else "")
    env.update({"PYTHONUNBUFFERED": "1", protocol.LAUNCH_ID: launch_id, protocol.RUN_DIR: run_dir,
                protocol.LAUNCH_HOST: socket.gethostname(), protocol.ERROR_DIR: error_dir,
                protocol.DEVICE: cfg.device, "VT_RESTART_COUNT": str(restart),
                protocol.OVERSUBSCRIBE_GPUS: "1" if cfg.allow_oversubscribe_gpus else "0"})
    if mpi is None:  # no MPI: this launcher is the rank's only source of truth
        env.update({"VT_RANK": "0", "VT_LOCAL_RANK": "0", "VT_WORLD_SIZE": "1", "VT_LOCAL_WORLD_SIZE": "1"})
        if cfg.single_process:
            env["VT_SINGLE_PROCESS"] = "1"
    env.update(launcher_env(mpi))
    if cfg.nproc_per_node > 1 and "OMP_NUM_THREADS" not in os.environ:
        # as torchrun: ranks sharing a host split its cores, or each one's BLAS spawns a thread per core
        # and N ranks on N cores run N*N spinning threads (a 4x slower step measured on 2 cores)
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // cfg.nproc_per_node))
    return env


def _report(res: AttemptResult, world_size: int) -> None:
    f = res.first_failure
    if f is None:
        print(f"vt-launch: the job failed with exit code {res.exit_code} (no rank reported a failure)",
              file=sys.stderr)
        return
    who = f"rank {f.rank}" if world_size > 1 else "the process"
    msg = f"vt-launch: {who} failed first: {f.what}; exit code {f.exit_code}"
    if f.error_file:
        msg += f"\nvt-launch: error file: {f.error_file}"
    if f.traceback.strip():
        msg += f"\nvt-launch: traceback of {who}:\n" + f.traceback.rstrip("\n")
    print(msg, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    ns = parser.parse_args(argv)
    cfg = _config(ns, parser)
    try:
        mpi = None
        if cfg.world_size > 1:
            mpi = (find_srun() if not ns.no_srun and not ns.mpiexec else None) or find_mpi(ns.mpiexec)
            if importlib.util.find_spec("mpi4py") is None:
                print(f"vt-launch: warning: mpi4py is not installed; collectives over MPI will fail. {INSTALL_HINT}",
                      file=sys.stderr)
    except LaunchError as e:
        print(f"vt-launch: error: {e}", file=sys.stderr)
        return 2
    error_dir = os.path.abspath(cfg.log_dir) if cfg.log_dir else None
    if error_dir is None:
        from vibetensor import _env  # noqa: PLC0415
        error_dir = os.path.abspath(_env.reload().dump_dir)
    if cfg.log_dir:
        os.makedirs(cfg.log_dir, exist_ok=True)

    stop = {"sig": None}

    def on_signal(signum, _frame):
        stop["sig"] = signum

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    launch_id = uuid.uuid4().hex
    try:
        code = 1
        for restart in range(cfg.max_restarts + 1):
            run_dir = tempfile.mkdtemp(prefix="vt-launch-")
            try:
                env = _rank_env(cfg, mpi, launch_id, run_dir, error_dir, restart)
                cmd = build_command(mpi, cfg, sorted(k for k in env if k.startswith(("VT_", "PYTHON")))) if mpi \
                    else rank_command(cfg)
                emit = Emitter(prefix=cfg.world_size > 1, log_dir=cfg.log_dir)
                try:
                    res = Attempt(cmd, env, run_dir, error_dir, cfg.world_size, emit,
                                  tagged=cfg.multi_host or (mpi is not None and mpi.flavor is Flavor.SLURM),
                                  launch_id=launch_id, restart=restart,
                                  stop_flag=lambda: stop["sig"] is not None).run()
                finally:
                    emit.close()
            finally:
                shutil.rmtree(run_dir, ignore_errors=True)
            if res.interrupted:
                sig = stop["sig"] or signal.SIGINT
                print(f"vt-launch: {signal.Signals(sig).name}: stopped every rank", file=sys.stderr)
                return 128 + sig
            code = res.exit_code
            if code == 0:
                return 0
            _report(res, cfg.world_size)
            if restart < cfg.max_restarts:
                print(f"vt-launch: restarting the job ({restart + 1}/{cfg.max_restarts})", file=sys.stderr,
                      flush=True)
        return code
    finally:
        for s, h in old.items():
            signal.signal(s, h)


if __name__ == "__main__":
    sys.exit(main())
