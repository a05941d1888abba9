"""What vt-launch and its ranks tell each other: environment names and the per-attempt run directory.

Internal variables (set by the launcher for its ranks, not user flags):

    VT_LAUNCH_ID        unique id of one vt-launch invocation (error files carry it)
    VT_LAUNCH_RUN_DIR   per-attempt scratch dir on the launcher's host: rank<R>.pid, rank<R>.exit,
                        rank<R>.out / rank<R>.err (the rank's stdout/stderr, tailed by the launcher)
    VT_LAUNCH_HOST      the launcher's host name; ranks elsewhere ignore the run dir
    VT_LAUNCH_ERROR_DIR where ranks write vt_error_rank<R>.txt (--log-dir, else VT_DUMP_DIR)
    VT_LAUNCH_DEVICE    auto | cpu | cuda (--device)
    VT_LAUNCH_OVERSUBSCRIBE_GPUS  1: ranks may share GPUs (local_rank % gpus)

User-visible: VT_RESTART_COUNT (0 on the first attempt), VT_SINGLE_PROCESS, VT_BOOTSTRAPPED, and the
exported RANK/LOCAL_RANK/WORLD_SIZE/LOCAL_WORLD_SIZE with their VT_* twins.
"""
from __future__ import annotations

import os
import socket

LAUNCH_ID = "VT_LAUNCH_ID"
RUN_DIR = "VT_LAUNCH_RUN_DIR"
LAUNCH_HOST = "VT_LAUNCH_HOST"
ERROR_DIR = "VT_LAUNCH_ERROR_DIR"
DEVICE = "VT_LAUNCH_DEVICE"
OVERSUBSCRIBE_GPUS = "VT_LAUNCH_OVERSUBSCRIBE_GPUS"

# Never inherited by the ranks of a new job: they would override what its MPI says (rank_env precedence).
SCRUB = ("VT_RANK", "VT_LOCAL_RANK", "VT_WORLD_SIZE", "VT_LOCAL_WORLD_SIZE", "RANK", "LOCAL_RANK",
         "WORLD_SIZE", "LOCAL_WORLD_SIZE", "VT_BOOTSTRAPPED", "VT_SINGLE_PROCESS", "VT_LOCAL_DEVICE",
         RUN_DIR, LAUNCH_ID, LAUNCH_HOST)


def run_dir() -> str | None:
    """This rank's run dir, when the launcher's host is this host."""
    d = os.environ.get(RUN_DIR)
    if not d or os.environ.get(LAUNCH_HOST, socket.gethostname()) != socket.gethostname():
        return None
    return d if os.path.isdir(d) else None


def _write(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


_owner_pid: int | None = None   # the rank process itself (forked children must not report for it)


def write_pid(rank: int) -> None:
    global _owner_pid
    d = run_dir()
    if d:
        _owner_pid = os.getpid()
        _write(os.path.join(d, f"rank{rank}.pid"), str(os.getpid()))


def write_exit_status(rank: int, code: int) -> None:
    d = run_dir()
    if d and os.getpid() == _owner_pid:
        try:
            _write(os.path.join(d, f"rank{rank}.exit"), str(code))
        except OSError:
            pass


def redirect_output(rank: int) -> bool:
    """Point fds 1 and 2 at rank<R>.out / rank<R>.err in the run dir (C-level output included); the
    launcher tails them and adds the rank prefix. Files survive a hard kill, pipes would lose the tail."""
    d = run_dir()
    if not d:
        return False
    import sys  # noqa: PLC0415
    for fd, stream, name in ((1, sys.stdout, "out"), (2, sys.stderr, "err")):
        try:
            stream.flush()
        except Exception:
            pass
        f = os.open(os.path.join(d, f"rank{rank}.{name}"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(f, fd)
        os.close(f)
    return True


def report_os_exit(rank: int) -> None:
    """Make ``os._exit(code)`` in the rank record its status first: the launcher must not mistake a
    deliberate fast exit for a rank killed by a signal."""
    real = os._exit
    if getattr(real, "_vt_reports", False):
        return

    def _exit(code):
        write_exit_status(rank, code)
        real(code)

    _exit._vt_reports = True
    os._exit = _exit
