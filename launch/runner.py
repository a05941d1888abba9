"""One attempt of a job: start the MPI launcher (or the single process), watch every rank, stop the job
when one fails, and say which rank failed first.

Why the launcher watches too: Hydra leaves the job running when a rank exits non-zero before MPI_Init
while its peers wait in a collective, and ranks run in their own sessions, so killing mpiexec's process
group alone does not reach them. Each rank reports its pid and exit status in the run dir; a rank that
exits non-zero, or vanishes without a status (a signal), gets the job stopped within ~1 s + 2 s.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass

from vibetensor.launch import failure

from .output import Emitter, FileTailer, pump_pipe

POLL_S = 0.05
GRACE_S = 1.0       # after a failure, time for the MPI to tear the job down itself
TERM_WAIT_S = 2.0   # SIGTERM -> SIGKILL


@dataclass(frozen=True)
class Failure:
    rank: int | None
    exit_code: int
    time: float
    what: str                 # one line
    traceback: str = ""
    error_file: str | None = None


@dataclass(frozen=True)
class AttemptResult:
    exit_code: int
    first_failure: Failure | None
    interrupted: bool = False


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime  # when the rank wrote its status, not when a scan found it
    except OSError:
        return time.time()


def _set_pdeathsig():  # runs in the forked child before exec: mpiexec dies with vt-launch
    try:
        import ctypes  # noqa: PLC0415
        ctypes.CDLL(None).prctl(1, int(signal.SIGTERM), 0, 0, 0)
    except Exception:
        pass


class Attempt:
    def __init__(self, cmd: list[str], env: dict, run_dir: str, error_dir: str, world_size: int,
                 emit: Emitter, tagged: bool, launch_id: str, restart: int, stop_flag):
        self.cmd, self.env, self.run_dir, self.error_dir = cmd, env, run_dir, error_dir
        self.world_size, self.emit, self.tagged = world_size, emit, tagged
        self.launch_id, self.restart, self.stop_flag = launch_id, restart, stop_flag
        self.pids: dict[int, int] = {}
        self.abrupt: dict[int, float] = {}      # rank -> when it was seen gone without an exit status
        self.nonzero: dict[int, tuple[int, float]] = {}
        self.stopped_at: float | None = None    # when vt-launch began to signal the job

    # -- process bookkeeping -------------------------------------------------------------------------
    def _scan(self) -> None:
        for r in range(self.world_size):
            if r not in self.pids:
                pid = _read_int(os.path.join(self.run_dir, f"rank{r}.pid"))
                if pid is None:
                    continue
                self.pids[r] = pid
            if r in self.abrupt or r in self.nonzero:
                continue
            status = os.path.join(self.run_dir, f"rank{r}.exit")
            code = _read_int(status)
            if code is None and not _alive(self.pids[r]):
                code = _read_int(status)  # the status file is written before exit; re-read to close the race
                if code is None:
                    self.abrupt[r] = time.time()  # seen gone now: a status written since the last scan sorts first
                    continue
            if code:
                self.nonzero[r] = (code, _mtime(status))

    def _signal_all(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)  # mpiexec and whatever stayed in its group
        except (ProcessLookupError, PermissionError):
            pass
        for pid in self.pids.values():
            if not _alive(pid):
                continue
            try:  # Hydra makes each rank a session leader: its group holds the rank's own children too
                if os.getpgid(pid) == pid:
                    os.killpg(pid, sig)
                else:
                    os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def _stop_job(self) -> None:
        if self.stopped_at is None:
            self.stopped_at = time.time()
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + TERM_WAIT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None and not any(_alive(p) for p in self.pids.values()):
                return
            time.sleep(POLL_S)
        self._signal_all(signal.SIGKILL)

    # -- the attempt -----------------------------------------------------------------------------------
    def run(self) -> AttemptResult:
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True, preexec_fn=_set_pdeathsig)
        pumps = [pump_pipe(self.proc.stdout, self.emit, False, self.tagged),
                 pump_pipe(self.proc.stderr, self.emit, True, self.tagged)]
        tailer = FileTailer(self.run_dir, self.emit)
        stop_at = None
        interrupted = False
        try:
            while True:
                tailer.poll()
                self._scan()
                if self.proc.poll() is not None:
                    break
                if self.stop_flag():
                    interrupted = True
                    self._stop_job()
                    break
                if stop_at is None and (self.abrupt or self.nonzero):
                    stop_at = time.monotonic() + GRACE_S
                if stop_at is not None and time.monotonic() >= stop_at:
                    self._stop_job()
                    break
                time.sleep(POLL_S)
            self.proc.wait()
            self._scan()
            if any(_alive(p) for p in self.pids.values()):  # the MPI left ranks behind: no orphans
                self._stop_job()
        except BaseException:
            self._stop_job()
            raise
        finally:
            for t in pumps:
                t.join(timeout=2.0)
            tailer.poll(final=True)
        if interrupted:
            return AttemptResult(130, None, interrupted=True)
        first = self._first_failure()
        code = first.exit_code if first else self.proc.returncode
        if code < 0:  # mpiexec itself died from a signal
            code = 128 - code
        return AttemptResult(code, first)

    def _first_failure(self) -> Failure | None:
        found: list[Failure] = []
        for r in range(self.world_size):
            path = failure.error_file_path(r, self.error_dir)
            try:
                head, tb = failure.read_error_file(path)
            except (OSError, ValueError):
                continue
            if head.get("launch_id") != self.launch_id or head.get("restart") != self.restart:
                continue  # left over from another run
            found.append(Failure(r, int(head.get("exit_code", 1)), float(head.get("time", 0)),
                                 f"{head.get('exception')} (host {head.get('host')}, pid {head.get('pid')})",
                                 tb, path))
        sig, culprit_pid = self._culprit_from_mpi_output()
        earliest = min([f.time for f in found] + list(self.abrupt.values())
                       + [t for _, t in self.nonzero.values()], default=0.0)
        for r, t in self.abrupt.items():
            if culprit_pid is not None and self.pids.get(r) == culprit_pid and (
                    self.stopped_at is None or t < self.stopped_at):
                # the MPI named it and vt-launch had not signalled it: it went first, whatever the scans saw
                # (Hydra names a rank that vt-launch's own teardown killed just as readily)
                t = earliest - 1e-3
            what = f"killed by signal {sig}" if sig else "exited without a status (a signal, or os._exit)"
            found.append(Failure(r, 128 + sig if sig else (self.proc.returncode or 1), t,
                                 f"{what} (pid {self.pids.get(r)})"))
        for r, (code, t) in self.nonzero.items():
            if not any(f.rank == r for f in found):
                found.append(Failure(r, code, t, f"exited with code {code} without a traceback "
                                                 f"(os._exit, or no error file in {self.error_dir})"))
        return min(found, key=lambda f: f.time) if found else None

    def _culprit_from_mpi_output(self) -> tuple[int | None, int | None]:
        """(signal, pid) of the first bad termination the MPI reported (Hydra / Open MPI wording)."""
        sig = pid = None
        for ln in self.emit.untagged:
            m = re.search(r"\(signal (\d+)\)|exited on signal (\d+)", ln)
            if m and sig is None:
                sig = int(m.group(1) or m.group(2))
            m = re.search(r"^=\s+PID (\d+) RUNNING AT|with PID (\d+) on node", ln)
            if m and pid is None:
                pid = int(m.group(1) or m.group(2))
        return sig, pid
