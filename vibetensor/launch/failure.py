"""Rank-side failure handling: error file, event-ring dump, job abort.

A failing rank writes ``<dir>/vt_error_rank<R>.txt`` -- one JSON header line (rank, pid, host, exit code,
wall time, launch id, restart count, exception) then the traceback -- calls ``vt.observe.dump`` when it
exists, and aborts the whole job so no peer waits forever in a collective: ``MPI.COMM_WORLD.Abort(code)``
when MPI is (or can cheaply be) initialised under an MPI launcher, else ``os._exit(code)`` and vt-launch's
watcher stops the others. ``<dir>`` is vt-launch's log/error directory (``VT_LAUNCH_ERROR_DIR``) or
``VT_DUMP_DIR``.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import traceback

from . import protocol

_info = None          # RankInfo of this process, set by install()
_failing = threading.Lock()


def error_dir() -> str:
    d = os.environ.get(protocol.ERROR_DIR)
    if d:
        return d
    from .. import _env  # noqa: PLC0415
    return _env.reload().dump_dir


def error_file_path(rank: int, directory: str | None = None) -> str:
    return os.path.join(directory or error_dir(), f"vt_error_rank{rank}.txt")


def write_error_file(info, code: int, tb_text: str, summary: str) -> str | None:
    header = {
        "rank": info.rank, "local_rank": info.local_rank, "world_size": info.world_size,
        "pid": os.getpid(), "host": socket.gethostname(), "exit_code": code, "time": time.time(),
        "launch_id": os.environ.get(protocol.LAUNCH_ID), "restart": int(os.environ.get("VT_RESTART_COUNT", "0")),
        "exception": summary,
    }
    path = error_file_path(info.rank)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(json.dumps(header) + "\n\n" + tb_text)
        os.replace(tmp, path)  # atomic: the launcher never reads half a file
        return path
    except OSError as e:
        print(f"vibetensor: rank {info.rank} could not write its error file {path}: {e}", file=sys.stderr)
        return None


def read_error_file(path: str) -> tuple[dict, str]:
    """(header, traceback text) of an error file."""
    with open(path) as f:
        head, _, rest = f.read().partition("\n\n")
    return json.loads(head), rest


def _dump_events(info, summary: str) -> None:
    try:
        from .. import observe  # noqa: PLC0415
        dump = getattr(observe, "dump", None)
        if dump is not None:
            dump(f"rank {info.rank} failed: {summary}", directory=error_dir())
    except Exception as e:  # a broken dump must not hide the original failure
        print(f"vibetensor: rank {info.rank}: event-ring dump failed: {e!r}", file=sys.stderr)


def _mpi_for_abort():
    """mpi4py.MPI ready to Abort, or None. Initialises MPI only under an MPI launcher when no vt-launch
    watcher can see this rank (plain mpiexec, or a remote host), where aborting through MPI is the only
    way to free peers blocked in a collective."""
    MPI = sys.modules.get("mpi4py.MPI")
    if MPI is None and protocol.run_dir() is None:
        from ..rank_env import under_mpi_launcher  # noqa: PLC0415
        if under_mpi_launcher():
            try:
                from mpi4py import MPI  # noqa: PLC0415
            except Exception:
                return None
    try:
        if MPI is not None and MPI.Is_initialized() and not MPI.Is_finalized():
            return MPI
    except Exception:
        pass
    return None


def abort_job(code: int) -> None:
    """End this rank and the job with ``code``. Never returns."""
    for s in (sys.stdout, sys.stderr):
        try:
            s.flush()
        except Exception:
            pass
    # If MPI_Abort itself hangs (broken fabric), leave anyway.
    t = threading.Timer(5.0, os._exit, args=(code,))
    t.daemon = True
    t.start()
    MPI = _mpi_for_abort() if (_info is None or _info.world_size > 1) else None
    if MPI is not None:
        MPI.COMM_WORLD.Abort(code)
    os._exit(code)


def fail(info, code: int, tb_text: str, summary: str, echo: bool = True) -> None:
    """Record this rank's failure and abort the job. Never returns."""
    with _failing:  # two threads failing at once: the first one reports
        if echo and tb_text:
            sys.stderr.write(tb_text if tb_text.endswith("\n") else tb_text + "\n")
        write_error_file(info, code, tb_text, summary)
        _dump_events(info, summary)
        protocol.write_exit_status(info.rank, code)
        abort_job(code)


def exit_code_of(exc: BaseException) -> int:
    if isinstance(exc, SystemExit):
        c = exc.code
        return 0 if c is None else c if isinstance(c, int) else 1
    if isinstance(exc, KeyboardInterrupt):
        return 130
    return 1


def handle(info, exc: BaseException) -> None:
    """Turn an exception escaping the script into the failure protocol (SystemExit(0) just returns)."""
    code = exit_code_of(exc)
    if code == 0:
        return
    tb_text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    summary = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, SystemExit):
        summary = f"SystemExit({exc.code!r})"
        if isinstance(exc.code, str):  # python prints sys.exit("msg") messages; keep that
            sys.stderr.write(exc.code + "\n")
    fail(info, code, tb_text, summary, echo=not isinstance(exc, SystemExit))


def install(info) -> None:
    """sys.excepthook -> error file + abort (the import-time bootstrap under plain mpiexec)."""
    global _info
    _info = info
    prev = sys.excepthook

    def hook(exc_type, exc, tb):
        if exc is None or exit_code_of(exc) == 0:
            return prev(exc_type, exc, tb)
        try:
            handle(info, exc.with_traceback(tb))
        finally:  # only reached if the failure protocol itself broke
            prev(exc_type, exc, tb)

    sys.excepthook = hook


def set_info(info) -> None:
    global _info
    _info = info
