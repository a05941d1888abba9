"""Per-rank dump files: ``dump(reason)`` writes the ring to ``<dir>/vt_events_rank<R>_pid<P>.json``.

Called on ``CollectiveTimeout`` (collectives), when the launcher aborts a job after a failure, and
on SIGUSR1 once ``install_signal_dump()`` ran. Files are written to a temp file in the same
directory and renamed into place, so a reader (``vt-trace``) never sees half a dump, even when a
rank is killed while writing. ``load_dumps()`` reads them back, with errors that name the file.
"""
from __future__ import annotations

import glob
import json
import os
import signal
import sys
import tempfile
import threading
from importlib import import_module

from .. import _env
from .capture import FORMAT, current_rank, snapshot
from .stats import counter_add

_ev = import_module(".events", __package__)  # the module (the package's `events` is the function)

DUMP_GLOB = "vt_events_rank*_pid*.json"


class DumpError(ValueError):
    """A dump directory or file that vt-trace cannot use (missing, empty, malformed)."""


def dump_path(directory: str | None = None) -> str:
    d = directory if directory is not None else _env.flags().dump_dir
    return os.path.join(d, f"vt_events_rank{current_rank()[0]}_pid{os.getpid()}.json")


def dump(reason: str, directory: str | None = None, *, include_stacks: bool = True) -> str:
    """Write this process's ring, counters, rank, pid, host, reason and wall time; return the path.

    ``directory`` defaults to ``VT_DUMP_DIR`` (``./vt_dumps``). A later dump by the same process
    replaces the earlier one (the ring still holds its events).
    """
    path = dump_path(directory)
    d = os.path.dirname(path)
    os.makedirs(d, exist_ok=True)
    _ev.mark("observe.dump", reason=str(reason))
    data = snapshot(include_stacks=include_stacks)
    data["reason"] = str(reason)
    fd, tmp = tempfile.mkstemp(prefix=".vt_events_", suffix=".tmp", dir=d)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    counter_add("observe.dumps")
    return path


# ---- SIGUSR1 ------------------------------------------------------------------------------------
_installed: dict[int, object] = {}  # signum -> the handler that was there before ours


def install_signal_dump(signum: int | None = None, directory: str | None = None):
    """On ``signum`` (default SIGUSR1) dump the ring, then call the handler that was installed before.

    Idempotent per signal. Must run in the main thread (Python's rule for signal handlers). Python
    runs the handler between bytecodes of the main thread, so a main thread blocked in one long C
    call dumps when that call returns. Returns the previous handler.
    """
    if signum is None:
        signum = getattr(signal, "SIGUSR1", None)
        if signum is None:
            raise NotImplementedError("install_signal_dump: this platform has no SIGUSR1; "
                                      "call vt.observe.dump(reason) from your code instead")
    signum = int(signum)
    if signum in _installed:
        return _installed[signum]
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("install_signal_dump must be called from the main thread "
                           "(Python only lets the main thread install signal handlers)")
    previous = signal.getsignal(signum)

    def _on_signal(sig, frame):
        name = signal.Signals(sig).name
        try:
            path = dump(f"signal {name}", directory)
            print(f"vibetensor: rank {current_rank()[0]} (pid {os.getpid()}) got {name}; "
                  f"event ring dumped to {path}", file=sys.stderr, flush=True)
        except Exception as exc:  # a failed dump must not kill the process it is diagnosing
            print(f"vibetensor: event dump on {name} failed: {exc!r}", file=sys.stderr, flush=True)
        # Chain: a Python handler installed before ours still runs. SIG_DFL (terminate, for
        # SIGUSR1) and SIG_IGN are not "handlers" to chain to.
        if callable(previous):
            previous(sig, frame)

    signal.signal(signum, _on_signal)
    _installed[signum] = previous
    return previous


def uninstall_signal_dump(signum: int | None = None) -> None:
    """Put back the handler that ``install_signal_dump`` replaced."""
    signum = int(signum if signum is not None else signal.SIGUSR1)
    if signum in _installed:
        signal.signal(signum, _installed.pop(signum))


_exit_dump_dir: list = []  # non-empty once install_exit_dump ran: [directory]


def install_exit_dump(directory: str | None = None) -> None:
    """Also dump when the interpreter exits normally (atexit). Off by default: a job where one rank
    finished early (it skipped a collective) otherwise leaves no record of what it did."""
    import atexit
    if _exit_dump_dir:
        return
    _exit_dump_dir.append(directory)

    def _at_exit():
        try:
            dump("process exit", _exit_dump_dir[0])
        except Exception as exc:
            print(f"vibetensor: event dump at exit failed: {exc!r}", file=sys.stderr, flush=True)

    atexit.register(_at_exit)


# ---- reading dumps back -------------------------------------------------------------------------
def load_dump(path: str) -> dict:
    """One dump file as a dict, validated enough that the analyzers can trust its shape."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DumpError(f"{path}: no such file") from None
    except json.JSONDecodeError as exc:
        raise DumpError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
                        "was it truncated? dumps are written atomically, so this file was not "
                        "written by vt.observe.dump") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DumpError(f"{path}: cannot read it: {exc}") from None
    if not isinstance(data, dict):
        raise DumpError(f"{path}: expected a JSON object (a vibetensor event dump), got {type(data).__name__}")
    missing = [k for k in ("rank", "pid", "events") if k not in data]
    if missing:
        raise DumpError(f"{path}: not a vibetensor event dump: missing {', '.join(map(repr, missing))}")
    if not isinstance(data["events"], list) or not isinstance(data["rank"], int):
        raise DumpError(f"{path}: not a vibetensor event dump: 'events' must be a list and 'rank' an integer")
    for i, e in enumerate(data["events"]):
        if not isinstance(e, dict) or not isinstance(e.get("kind"), str) or not isinstance(e.get("seq"), int):
            raise DumpError(f"{path}: event #{i} is malformed (needs 'kind' and 'seq'): {str(e)[:120]}")
        if not isinstance(e.get("ts_wall_ns", e.get("ts_ns")), int):
            raise DumpError(f"{path}: event #{i} (seq {e['seq']}) has no integer timestamp 'ts_wall_ns'")
    data.setdefault("format", FORMAT)
    data["path"] = path
    return data


def load_dumps(*paths: str) -> tuple[list[dict], list[str]]:
    """Dumps from directories (every ``vt_events_rank*_pid*.json``) and/or files.

    Where one rank left several dumps (restarts), the newest by wall time is used; returns
    (dumps sorted by rank, notes about files that were skipped).
    """
    if not paths:
        raise DumpError("no dump directory given")
    files: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            found = sorted(glob.glob(os.path.join(p, DUMP_GLOB)))
            if not found:
                raise DumpError(f"{p}: no event dumps (files named vt_events_rank<R>_pid<P>.json) in this "
                                "directory; dumps go to VT_DUMP_DIR (default ./vt_dumps)")
            files.extend(found)
        elif os.path.isfile(p):
            files.append(p)
        else:
            raise DumpError(f"{p}: no such file or directory")
    by_rank: dict[int, list[dict]] = {}
    for f in files:
        d = load_dump(f)
        by_rank.setdefault(d["rank"], []).append(d)
    dumps, notes = [], []
    for r in sorted(by_rank):
        ds = sorted(by_rank[r], key=lambda d: d.get("wall_time_ns", 0))
        dumps.append(ds[-1])
        for old in ds[:-1]:
            notes.append(f"rank {r}: using the newest dump {os.path.basename(ds[-1]['path'])}, "
                         f"ignoring older {os.path.basename(old['path'])}")
    return dumps, notes
