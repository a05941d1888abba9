"""Rank output: tail the ranks' stdout/stderr files, read the MPI's own pipes, add "[rank R] " prefixes,
and copy every rank's lines to ``--log-dir/rank<R>.log``."""
from __future__ import annotations

import os
import re
import sys
import threading

from .mpi import split_tag

_FILE_RE = re.compile(r"^rank(\d+)\.(out|err)$")
_HYDRA_BANNER = re.compile(r"^(=+|=   .*|YOUR APPLICATION TERMINATED WITH THE EXIT STRING.*|This typically refers to a "
                           r"problem with your application\.|Please see the FAQ page for debugging suggestions|)$")


class Emitter:
    """Thread-safe line sink: prefixes, picks stdout/stderr, mirrors to per-rank log files."""

    def __init__(self, prefix: bool, log_dir: str | None, out=None, err=None):
        self.prefix, self.log_dir = prefix, log_dir
        self.out, self.err = out or sys.stdout, err or sys.stderr
        self._lock = threading.Lock()
        self._logs: dict[int, object] = {}
        self.untagged: list[str] = []   # the MPI's own messages (signal names are parsed from these)

    def line(self, rank: int | None, text: str, is_err: bool) -> None:
        stream = self.err if is_err else self.out
        with self._lock:
            if rank is None:
                self.untagged.append(text)
                if not _HYDRA_BANNER.match(text):  # vt-launch prints its own summary of the failure
                    stream.write(text + "\n")
            else:
                stream.write((f"[rank {rank}] " if self.prefix else "") + text + "\n")
                if self.log_dir:
                    f = self._logs.get(rank)
                    if f is None:
                        f = self._logs[rank] = open(os.path.join(self.log_dir, f"rank{rank}.log"), "a")
                    f.write(text + "\n")
                    f.flush()
            stream.flush()

    def close(self) -> None:
        with self._lock:
            for f in self._logs.values():
                f.close()
            self._logs.clear()


class FileTailer:
    """Follows rank<R>.out / rank<R>.err in the run dir (the ranks redirect fds 1 and 2 there)."""

    def __init__(self, run_dir: str, emit: Emitter):
        self.run_dir, self.emit = run_dir, emit
        self._pos: dict[str, int] = {}
        self._partial: dict[str, bytes] = {}

    def poll(self, final: bool = False) -> None:
        try:
            names = sorted(os.listdir(self.run_dir))
        except OSError:
            return
        for name in names:
            m = _FILE_RE.match(name)
            if not m:
                continue
            path = os.path.join(self.run_dir, name)
            try:
                with open(path, "rb") as f:
                    f.seek(self._pos.get(name, 0))
                    data = f.read()
            except OSError:
                continue
            if not data and not (final and self._partial.get(name)):
                continue
            self._pos[name] = self._pos.get(name, 0) + len(data)
            buf = self._partial.get(name, b"") + data
            *lines, rest = buf.split(b"\n")
            if final and rest:
                lines, rest = lines + [rest], b""
            self._partial[name] = rest
            rank, is_err = int(m.group(1)), m.group(2) == "err"
            for ln in lines:
                self.emit.line(rank, ln.decode("utf-8", "replace").rstrip("\r"), is_err)


def pump_pipe(pipe, emit: Emitter, is_err: bool, tagged: bool) -> threading.Thread:
    """Reads the MPI's stdout/stderr: tagged lines (multi-host) go to their rank, the rest pass through."""
    def run():
        for raw in iter(pipe.readline, b""):
            text = raw.decode("utf-8", "replace").rstrip("\n").rstrip("\r")
            rank, text = split_tag(text) if tagged else (None, text)
            emit.line(rank, text, is_err)
        pipe.close()
    t = threading.Thread(target=run, daemon=True, name="vt-launch-pipe")
    t.start()
    return t
