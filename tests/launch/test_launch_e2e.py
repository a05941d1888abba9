"""vt-launch end to end: real ranks through the mpich wheel's mpiexec (2 ranks, CPU)."""
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MPIEXEC = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
pytestmark = pytest.mark.skipif(MPIEXEC is None or importlib.util.find_spec("mpi4py") is None,
                                reason="needs mpiexec and mpi4py: pip install 'vibetensor[mpi]'")

_LAUNCHER_VARS = ("PMI_", "OMPI_", "PMIX_", "MPI_LOCAL", "SLURM_", "HYDRA_")
_RANK_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "VT_RANK", "VT_LOCAL_RANK", "VT_WORLD_SIZE",
              "VT_LOCAL_WORLD_SIZE", "VT_BOOTSTRAPPED", "VT_SINGLE_PROCESS", "VT_RESTART_COUNT")

ENV_SCRIPT = """
import json, os, sys
{imp}
keys = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "VT_RANK", "VT_WORLD_SIZE", "VT_RESTART_COUNT",
        "VT_SINGLE_PROCESS", "OMP_NUM_THREADS")
env = json.dumps({{**{{k: os.environ.get(k) for k in keys}}, "argv": sys.argv[1:], "name": __name__}})
print("ENV " + env)
with open("env_%s.json" % os.environ.get("RANK", "x"), "w") as f:  # plain mpiexec may merge ranks' stdout lines
    f.write(env)
print("to-stderr " + os.environ.get("RANK", "?"), file=sys.stderr)
"""


def _env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(_LAUNCHER_VARS) and k not in _RANK_VARS}
    env["PYTHONPATH"] = str(ROOT)
    env["VT_DUMP_DIR"] = str(tmp_path / "dumps")
    return env


def _script(tmp_path, name, body):
    p = tmp_path / name
    p.write_text(body)
    return str(p)


def _launch(tmp_path, *args, timeout=40):
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "launch.cli", *args], cwd=tmp_path, env=_env(tmp_path),
                       capture_output=True, text=True, timeout=timeout)
    return p, time.monotonic() - t0


def _leftovers(marker: str) -> list[str]:
    """Processes whose command line mentions marker (the test's tmp dir), after a short settle."""
    found = []
    for _ in range(10):
        found = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                        continue
            except OSError:
                continue
            if marker in cmd:
                found.append(f"{pid}: {cmd}")
        if not found:
            return []
        time.sleep(0.1)
    return found


def _env_lines(stdout: str) -> dict[int, dict]:
    out = {}
    for line in stdout.splitlines():
        if "ENV {" in line:
            prefix, _, payload = line.partition("ENV ")
            d = json.loads(payload)
            out[int(d["RANK"])] = (prefix, d)
    return out


def test_env_contract_under_vt_launch(tmp_path):
    s = _script(tmp_path, "env.py", ENV_SCRIPT.format(imp=""))
    p, _ = _launch(tmp_path, "-n", "2", "--log-dir", "logs", s, "--lr", "3", "-x")
    assert p.returncode == 0, p.stderr
    got = _env_lines(p.stdout)
    assert sorted(got) == [0, 1]
    for r, (prefix, d) in got.items():
        assert prefix == f"[rank {r}] "
        assert (d["RANK"], d["LOCAL_RANK"], d["WORLD_SIZE"], d["LOCAL_WORLD_SIZE"]) == (str(r), str(r), "2", "2")
        assert (d["VT_RANK"], d["VT_WORLD_SIZE"], d["VT_RESTART_COUNT"]) == (str(r), "2", "0")
        assert d["argv"] == ["--lr", "3", "-x"] and d["name"] == "__main__" and d["VT_SINGLE_PROCESS"] is None
        if "OMP_NUM_THREADS" not in os.environ:  # two ranks split the host's cores, as under torchrun
            assert d["OMP_NUM_THREADS"] == str(max(1, (os.cpu_count() or 1) // 2))
        assert f"[rank {r}] to-stderr {r}" in p.stderr.splitlines()
        log = (tmp_path / "logs" / f"rank{r}.log").read_text()
        assert f"to-stderr {r}" in log and '"RANK": "%d"' % r in log and "[rank" not in log


def test_env_contract_under_plain_mpiexec(tmp_path):
    s = _script(tmp_path, "env.py", ENV_SCRIPT.format(imp="import vibetensor"))
    p = subprocess.run([MPIEXEC, "-n", "2", sys.executable, s], cwd=tmp_path, env=_env(tmp_path),
                       capture_output=True, text=True, timeout=40)
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("ENV {") == 2, p.stdout
    got = {r: json.loads((tmp_path / f"env_{r}.json").read_text()) for r in (0, 1)}
    assert sorted(p.name for p in tmp_path.glob("env_*.json")) == ["env_0.json", "env_1.json"]
    for r, d in got.items():
        assert (d["RANK"], d["LOCAL_RANK"], d["WORLD_SIZE"], d["LOCAL_WORLD_SIZE"]) == (str(r), str(r), "2", "2")
        assert d["VT_RANK"] == str(r)


FAIL_SCRIPT = """
import os, sys, time
from mpi4py import MPI
if os.environ["RANK"] == "1":
    time.sleep(0.3)
    {action}
MPI.COMM_WORLD.Barrier()
time.sleep(60)   # never reached by a healthy job: the test fails on time if the others are not stopped
"""


def test_exit_code_propagates_and_no_process_left(tmp_path):
    s = _script(tmp_path, "fail.py", FAIL_SCRIPT.format(action="sys.exit(3)"))
    p, dt = _launch(tmp_path, "-n", "2", s)
    assert p.returncode == 3, p.stderr
    assert dt < 10
    assert "rank 1 failed first: SystemExit(3)" in p.stderr
    assert _leftovers(str(tmp_path)) == []


def test_raise_before_barrier_aborts_job(tmp_path):
    s = _script(tmp_path, "boom.py", FAIL_SCRIPT.format(action="raise ValueError('boom on rank 1')"))
    p, dt = _launch(tmp_path, "-n", "2", "--log-dir", "logs", s)
    assert p.returncode == 1 and dt < 10, p.stderr
    report = p.stderr[p.stderr.index("vt-launch: rank 1 failed first"):]
    assert "ValueError: boom on rank 1" in report and 'boom.py", line 6' in report
    err = tmp_path / "logs" / "vt_error_rank1.txt"
    head, _, tb = err.read_text().partition("\n\n")
    head = json.loads(head)
    assert head["rank"] == 1 and head["exit_code"] == 1 and head["exception"] == "ValueError: boom on rank 1"
    assert "Traceback" in tb and "ValueError: boom on rank 1" in tb
    assert not (tmp_path / "logs" / "vt_error_rank0.txt").exists()
    assert _leftovers(str(tmp_path)) == []


def test_rank_killed_by_signal_stops_others(tmp_path):
    action = "open('killed_at', 'w').write(repr(time.time())); os.kill(os.getpid(), 9)"
    s = _script(tmp_path, "kill.py", FAIL_SCRIPT.format(action=action))
    p, _ = _launch(tmp_path, "-n", "2", s)
    ended = time.time()
    assert p.returncode == 128 + 9, p.stderr
    assert "rank 1 failed first: killed by signal 9" in p.stderr
    assert ended - float((tmp_path / "killed_at").read_text()) < 5.0
    assert _leftovers(str(tmp_path)) == []


def test_max_restarts(tmp_path):
    s = _script(tmp_path, "flaky.py", """
import os, sys
n = os.environ["VT_RESTART_COUNT"]
print("attempt", n)
if n == "0" and os.environ["RANK"] == "1":
    sys.exit(4)
""")
    p, _ = _launch(tmp_path, "-n", "2", "--max-restarts", "1", s)
    assert p.returncode == 0, p.stderr
    assert "vt-launch: restarting the job (1/1)" in p.stderr and "SystemExit(4)" in p.stderr
    for r in (0, 1):
        assert f"[rank {r}] attempt 1" in p.stdout.splitlines()


def test_single_process(tmp_path):
    s = _script(tmp_path, "env.py", ENV_SCRIPT.format(imp=""))
    p, _ = _launch(tmp_path, "--single-process", s, "a")
    assert p.returncode == 0, p.stderr
    (prefix, d), = _env_lines(p.stdout).values()
    assert prefix == "" and d["VT_SINGLE_PROCESS"] == "1" and d["argv"] == ["a"]
    assert (d["RANK"], d["LOCAL_RANK"], d["WORLD_SIZE"], d["LOCAL_WORLD_SIZE"]) == ("0", "0", "1", "1")


def test_single_process_failure_exit_code(tmp_path):
    s = _script(tmp_path, "bad.py", "raise KeyError('nope')\n")
    p, _ = _launch(tmp_path, "--single-process", s)
    assert p.returncode == 1 and "the process failed first: KeyError: 'nope'" in p.stderr
    assert (tmp_path / "dumps" / "vt_error_rank0.txt").exists()


def test_print_env(tmp_path):
    p, _ = _launch(tmp_path, "-n", "2", "--print-env")
    assert p.returncode == 0, p.stderr
    for r in (0, 1):
        assert f"[rank {r}] rank={r} local_rank={r} world_size=2 local_world_size=2 launcher=mpich" in p.stdout
        assert f"[rank {r}]   rank             <- PMI_RANK" in p.stdout
        assert f"[rank {r}]   exported: RANK={r} LOCAL_RANK={r} WORLD_SIZE=2" in p.stdout
    # inside a rank of a plain mpiexec job: the bootstrap prints the same
    p = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "launch.bootstrap", "--print-env"], cwd=tmp_path,
                       env=_env(tmp_path), capture_output=True, text=True, timeout=40)
    assert p.returncode == 0, p.stderr
    for r in (0, 1):
        assert f"rank={r} local_rank={r} world_size=2 local_world_size=2 launcher=mpich" in p.stdout


def test_sigterm_stops_every_rank(tmp_path):
    s = _script(tmp_path, "hang.py", """
import os, time
open(f"started{os.environ['RANK']}", "w").close()
time.sleep(60)
""")
    proc = subprocess.Popen([sys.executable, "-m", "launch.cli", "-n", "2", s], cwd=tmp_path, env=_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while not all((tmp_path / f"started{r}").exists() for r in (0, 1)):
        assert time.monotonic() < deadline and proc.poll() is None, "ranks never started"
        time.sleep(0.05)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    assert time.monotonic() - t0 < 5
    assert proc.returncode == 128 + signal.SIGTERM and "SIGTERM: stopped every rank" in err
    assert _leftovers(str(tmp_path)) == []


def test_plain_mpiexec_raise_aborts(tmp_path):
    # rank 1 fails before it initialises MPI while rank 0 waits in a barrier: the hook still aborts the job
    s = _script(tmp_path, "plain.py", """
import os, time
import vibetensor
if os.environ["RANK"] == "1":
    time.sleep(0.3)
    raise RuntimeError('x')
from mpi4py import MPI
MPI.COMM_WORLD.Barrier()
time.sleep(60)
""")
    t0 = time.monotonic()
    p = subprocess.run([MPIEXEC, "-n", "2", sys.executable, s], cwd=tmp_path, env=_env(tmp_path),
                       capture_output=True, text=True, timeout=40)
    assert p.returncode != 0 and time.monotonic() - t0 < 10
    head = json.loads((tmp_path / "dumps" / "vt_error_rank1.txt").read_text().partition("\n\n")[0])
    assert head["exception"] == "RuntimeError: x" and head["launch_id"] is None


@pytest.mark.parametrize("args,msg", [
    (["--bogus", "{s}"], "unrecognized arguments: --bogus"),
    (["missing.py"], "script 'missing.py' not found"),
    ([], "no script given"),
    (["-n", "0", "{s}"], "--nproc-per-node must be >= 1"),
    (["-n", "two", "{s}"], "must be a positive integer or 'auto'"),
    (["--single-process", "-n", "2", "{s}"], "--single-process runs one process"),
    (["--max-restarts", "-1", "{s}"], "--max-restarts must be >= 0"),
    (["-n", "2", "--mpiexec", "/nonexistent/mpiexec", "{s}"], "pip install 'vibetensor[mpi]'"),
])
def test_bad_input(tmp_path, args, msg):
    s = _script(tmp_path, "ok.py", "print('ran')\n")
    p, _ = _launch(tmp_path, *[a.format(s=s) for a in args])
    assert p.returncode == 2 and msg in p.stderr and "ran" not in p.stdout, p.stderr


def test_cuda_mode_without_enough_gpus_is_an_error(tmp_path):
    from vibetensor.core import backend
    s = _script(tmp_path, "ok.py", "print('ran')\n")
    n = backend.cuda_device_count()
    p, _ = _launch(tmp_path, "-n", str(n + 1), "--device", "cuda", s)
    assert p.returncode == 2 and "ran" not in p.stdout
    assert ("no CUDA GPU is visible" if n == 0 else f"exceeds the {n} GPU(s)") in p.stderr


@pytest.mark.gpu
def test_each_rank_gets_its_gpu(tmp_path):
    s = _script(tmp_path, "dev.py", """
import os
from vibetensor.core import backend
cp = backend.cupy_module()
print("DEV", os.environ["LOCAL_RANK"], cp.cuda.runtime.getDevice(), os.environ.get("VT_LOCAL_DEVICE"))
""")
    p, _ = _launch(tmp_path, "-n", "auto", "--device", "cuda", s)
    assert p.returncode == 0, p.stderr
    lines = [ln.split("DEV ", 1)[1].split() for ln in p.stdout.splitlines() if "DEV " in ln]
    assert lines and all(lr == dev and vd == f"cuda:{lr}" for lr, dev, vd in lines)


def test_os_exit_is_not_mistaken_for_a_signal(tmp_path):
    s = _script(tmp_path, "fast.py", """
import os, time
if os.environ["RANK"] == "0":
    os._exit(0)          # a deliberate fast exit while rank 1 still works: not a failure
time.sleep(1.5)
print("rank 1 done")
""")
    p, _ = _launch(tmp_path, "-n", "2", s)
    assert p.returncode == 0, p.stderr
    assert "[rank 1] rank 1 done" in p.stdout.splitlines()
    s = _script(tmp_path, "fast5.py",
                "import os, time\nif os.environ['RANK'] == '1':\n    os._exit(5)\ntime.sleep(60)\n")
    p, dt = _launch(tmp_path, "-n", "2", s)
    assert p.returncode == 5 and dt < 10 and "rank 1 failed first: exited with code 5" in p.stderr


def test_auto_nproc_and_module_entry_point(tmp_path):
    # `python -m vibetensor.launch` is vt-launch; -n auto on a CPU-only run is one rank
    p = subprocess.run([sys.executable, "-m", "vibetensor.launch", "-n", "auto", "--device", "cpu", "--print-env"],
                       cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=40)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("rank=0 local_rank=0 world_size=1 local_world_size=1 launcher=vt-launch")


def test_ranks_on_other_hosts_use_mpi_tags_and_mpi_abort(tmp_path):
    """--hosts mode where the ranks cannot see the launcher's run dir (it believes it is on another host):
    output arrives through Hydra's -prepend-rank tags and a failing rank aborts the job through MPI."""
    code = ("import socket, sys; socket.gethostname = lambda: 'launcher-elsewhere'; from launch.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    out = _script(tmp_path, "words.py", "for i in range(3):\n    print('line', i, 'of', 'many', 'words')\n")
    fail = _script(tmp_path, "fail.py", FAIL_SCRIPT.format(action="sys.exit(3)"))
    runs = []
    for s in (out, fail):
        runs.append(subprocess.run([sys.executable, "-c", code, "-n", "2", "--hosts", "localhost", "--nnodes", "1",
                                    "--log-dir", "logs", s], cwd=tmp_path, env=_env(tmp_path), capture_output=True,
                                   text=True, timeout=40))
    p = runs[0]
    assert p.returncode == 0, p.stderr
    for r in (0, 1):
        assert [ln for ln in p.stdout.splitlines() if ln.startswith(f"[rank {r}]")] == \
            [f"[rank {r}] line {i} of many words" for i in range(3)]
    p = runs[1]
    assert p.returncode == 3 and "rank 1 failed first: SystemExit(3)" in p.stderr
    assert _leftovers(str(tmp_path)) == []
