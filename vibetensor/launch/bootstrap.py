"""The per-rank bootstrap: ``python -m launch.bootstrap [--print-env] script.py [args]``.

Order matters: resolve the rank (rank_env), report to the launcher, select the GPU of the local rank
before anything touches CUDA, export the torchrun variables, install the failure hooks, then run the
script with ``__main__`` semantics. An exception escaping the script becomes an error file plus a job
abort (see failure.py).
"""
from __future__ import annotations

import os
import sys

# Before anything imports vibetensor: the import-time bootstrap stands down for vt-launch ranks.
os.environ["VT_BOOTSTRAPPED"] = "1"

from ..rank_env import RankInfo, RankEnvError, export_env, resolve  # noqa: E402
from . import failure, protocol  # noqa: E402

USAGE = "usage: python -m launch.bootstrap [--print-env] script.py [args ...]"


def _set_parent_death_signal() -> None:
    """Die with our parent (the MPI proxy or vt-launch): no orphan rank if they are killed outright."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes  # noqa: PLC0415
        import signal  # noqa: PLC0415
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def select_device(info: RankInfo) -> str | None:
    """Make cuda:<local_rank> this process's current GPU (CUDA_VISIBLE_DEVICES stays untouched).

    Returns the device string, or None on CPU / without CuPy. Single-process mode keeps every device.
    """
    mode = os.environ.get(protocol.DEVICE, "auto")
    if mode == "cpu" or os.environ.get("VT_SINGLE_PROCESS") == "1":
        return None
    import importlib.util  # noqa: PLC0415
    if importlib.util.find_spec("cupy") is None:
        if mode == "cuda":
            raise RuntimeError("vt-launch --device cuda: CuPy is not installed in this rank's Python; "
                               "pip install 'vibetensor[cuda12]' or 'vibetensor[cuda13]'")
        return None
    from ..core import backend  # noqa: PLC0415
    n = backend.cuda_device_count()
    if n == 0:
        if mode == "cuda":
            backend.cupy_module()  # raises the backend's DeviceUnavailableError with the reason
        return None
    idx = info.local_rank
    if idx >= n:
        if os.environ.get(protocol.OVERSUBSCRIBE_GPUS) != "1":
            raise RuntimeError(f"local rank {idx} has no GPU of its own: {n} GPU(s) visible on this host for "
                               f"{info.local_world_size} local ranks; start fewer ranks per node, or pass "
                               "--allow-oversubscribe-gpus to share them (local_rank % gpus)")
        idx %= n
    backend.cupy_module().cuda.Device(idx).use()
    dev = f"cuda:{idx}"
    os.environ["VT_LOCAL_DEVICE"] = dev
    return dev


def describe(info: RankInfo, device: str | None) -> str:
    lines = [f"rank={info.rank} local_rank={info.local_rank} world_size={info.world_size} "
             f"local_world_size={info.local_world_size} launcher={info.launcher}"]
    for field, src in info.sources.items():
        lines.append(f"  {field:<17}<- {src}")
    exported = " ".join(f"{k}={os.environ.get(k)}" for k in
                        ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "VT_RESTART_COUNT"))
    lines.append(f"  exported: {exported}")
    lines.append(f"  device: {device or 'cpu'}  single_process={os.environ.get('VT_SINGLE_PROCESS', '0')}  "
                 f"pid={os.getpid()}")
    return "\n".join(lines)


def _script_frames_only(exc: BaseException) -> BaseException:
    """Drop the bootstrap's and runpy's frames from the traceback: the user's code comes first."""
    tb = exc.__traceback__
    while tb is not None and (tb.tb_frame.f_code.co_filename == __file__
                              or "runpy" in tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    return exc.with_traceback(tb) if tb is not None else exc


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    print_env = bool(argv) and argv[0] == "--print-env"
    if print_env:
        argv = argv[1:]
    if not argv and not print_env:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        info = resolve()
    except RankEnvError as e:
        print(f"vt-launch bootstrap: {e}", file=sys.stderr)
        return 2
    protocol.write_pid(info.rank)
    protocol.report_os_exit(info.rank)
    protocol.redirect_output(info.rank)
    for s in (sys.stdout, sys.stderr):
        # whole lines per write: MPI output taggers (Hydra -prepend-rank) tag every write they read
        s.reconfigure(line_buffering=True, write_through=False)
    _set_parent_death_signal()
    export_env(info)
    os.environ.setdefault("VT_RESTART_COUNT", "0")
    failure.set_info(info)
    try:
        device = select_device(info)
        if print_env:
            print(describe(info, device), flush=True)
            protocol.write_exit_status(info.rank, 0)
            return 0
        script = argv[0]
        if not os.path.isfile(script):
            raise FileNotFoundError(f"vt-launch: script {script!r} not found (cwd {os.getcwd()})")
        sys.argv = argv
        sys.path[0] = os.path.dirname(os.path.abspath(script))
        import runpy  # noqa: PLC0415
        runpy.run_path(script, run_name="__main__")
    except BaseException as e:  # noqa: BLE001 - every way out of the script goes through the protocol
        failure.handle(info, _script_frames_only(e))  # returns only for SystemExit(0)/None
    for s in (sys.stdout, sys.stderr):
        s.flush()
    protocol.write_exit_status(info.rank, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
