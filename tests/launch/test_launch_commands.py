"""vt-launch's command lines for each MPI flavour, output tags, error files (no processes started)."""
import os
import sys

import pytest

from launch.mpi import (Flavor, LaunchConfig, LaunchError, MPILauncher, build_command, count_hostfile_hosts,
                        detect_flavor, find_mpi, launcher_env, split_tag)
from vibetensor.launch import failure
from vibetensor.rank_env import RankInfo

CFG = LaunchConfig(nproc_per_node=4, script_argv=("train.py", "--lr", "1"))
TAIL = [sys.executable, "-u", "-m", "launch.bootstrap", "train.py", "--lr", "1"]


def test_mpich_command():
    cmd = build_command(MPILauncher("/x/mpiexec", Flavor.MPICH, ""), CFG, [])
    assert cmd == ["/x/mpiexec", "-n", "4", "-bind-to", "none"] + TAIL


def test_mpich_hosts_tag_output():
    cfg = LaunchConfig(nproc_per_node=2, script_argv=("t.py",), hosts=("a", "b"), nnodes=2)
    cmd = build_command(MPILauncher("mpiexec", Flavor.MPICH, ""), cfg, [])
    assert cmd[:9] == ["mpiexec", "-n", "4", "-bind-to", "none", "-hosts", "a,b", "-ppn", "2"]
    assert "-prepend-rank" in cmd


def test_openmpi_root_oversubscribe_and_env():
    mpi = MPILauncher("mpirun", Flavor.OPENMPI, "")
    cmd = build_command(mpi, CFG, ["VT_LAUNCH_ID"], cpu_count=2, is_root=True)
    assert cmd[:5] == ["mpirun", "-n", "4", "--bind-to", "none"]
    assert "--allow-run-as-root" in cmd and "--oversubscribe" in cmd
    assert cmd[cmd.index("-x") + 1] == "VT_LAUNCH_ID"
    assert launcher_env(mpi, is_root=True) == {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    cmd = build_command(mpi, CFG, [], cpu_count=64, is_root=False)
    assert "--allow-run-as-root" not in cmd and "--oversubscribe" not in cmd
    assert launcher_env(mpi, is_root=False) == {}


def test_openmpi_hostfile():
    cfg = LaunchConfig(nproc_per_node=2, script_argv=("t.py",), hostfile="hf", nnodes=3)
    cmd = build_command(MPILauncher("mpirun", Flavor.OPENMPI, ""), cfg, [], cpu_count=8, is_root=False)
    assert cmd[1:3] == ["-n", "6"] and ["--hostfile", "hf", "--map-by", "ppr:2:node"] == cmd[5:9]
    assert "--tag-output" in cmd


def test_srun_command():
    cfg = LaunchConfig(nproc_per_node=2, script_argv=("t.py",), nnodes=2)
    cmd = build_command(MPILauncher("/usr/bin/srun", Flavor.SLURM, "srun"), cfg, [])
    assert cmd[:4] == ["/usr/bin/srun", "--ntasks=4", "--ntasks-per-node=2", "--nodes=2"]
    assert "--kill-on-bad-exit=1" in cmd and "--label" in cmd


@pytest.mark.parametrize("text,flavor", [
    ("HYDRA build details:\n    Version: 4.1", Flavor.MPICH),
    ("mpirun (Open MPI) 4.1.5", Flavor.OPENMPI),
    ("Intel(R) MPI Library for Linux* OS, Version 2021", Flavor.MPICH),
    ("something else", None),
])
def test_detect_flavor(text, flavor):
    assert detect_flavor(text) is flavor


@pytest.mark.parametrize("line,rank,text", [
    ("[3] hello", 3, "hello"), ("[1,12]<stdout>: hi there", 12, "hi there"), ("  7: x", 7, "x"),
    ("plain", None, "plain"),
])
def test_split_tag(line, rank, text):
    assert split_tag(line) == (rank, text)


def test_hostfile_count(tmp_path):
    hf = tmp_path / "hosts"
    hf.write_text("# nodes\nnode1 slots=4\nnode2:4\n\nnode1\n")
    assert count_hostfile_hosts(str(hf)) == 2
    (tmp_path / "empty").write_text("# none\n")
    with pytest.raises(LaunchError, match="names no hosts"):
        count_hostfile_hosts(str(tmp_path / "empty"))


def test_find_mpi_missing_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with pytest.raises(LaunchError, match=r"pip install 'vibetensor\[mpi\]'"):
        find_mpi()
    with pytest.raises(LaunchError, match="not an executable file"):
        find_mpi(str(tmp_path / "nope"))


def test_error_file_roundtrip(tmp_path, monkeypatch):
    monkeypatch.setenv("VT_LAUNCH_ERROR_DIR", str(tmp_path))
    monkeypatch.setenv("VT_LAUNCH_ID", "abc")
    info = RankInfo(1, 1, 2, 2, "rank=X local_rank=X world_size=X local_world_size=X", "mpich")
    path = failure.write_error_file(info, 7, "Traceback ...\nValueError: x\n", "ValueError: x")
    assert path == os.path.join(str(tmp_path), "vt_error_rank1.txt")
    head, tb = failure.read_error_file(path)
    assert head["rank"] == 1 and head["exit_code"] == 7 and head["launch_id"] == "abc"
    assert head["pid"] == os.getpid() and tb.endswith("ValueError: x\n")


@pytest.mark.parametrize("exc,code", [(SystemExit(3), 3), (SystemExit(None), 0), (SystemExit("msg"), 1),
                                      (KeyboardInterrupt(), 130), (ValueError(), 1)])
def test_exit_code_of(exc, code):
    assert failure.exit_code_of(exc) == code


def _attempt(tmp_path, world_size=2):
    from launch.output import Emitter
    from launch.runner import Attempt
    emit = Emitter(False, None, out=open(os.devnull, "w"), err=open(os.devnull, "w"))
    a = Attempt([], {}, str(tmp_path), str(tmp_path), world_size, emit, False, "id", 0, lambda: False)
    a.proc = type("P", (), {"returncode": 9})()
    return a, emit


@pytest.mark.parametrize("rank0", ["abrupt", "nonzero"])
def test_rank_named_by_the_mpi_goes_first_whatever_the_scans_saw(tmp_path, rank0):
    """Rank 1 killed by a signal; one scan then finds rank 0 gone too (or with a status) a moment *earlier*,
    because the scan reads rank 0 first. Hydra's banner names rank 1's pid: rank 1 failed first."""
    a, emit = _attempt(tmp_path)
    a.pids = {0: 100, 1: 101}
    if rank0 == "abrupt":
        a.abrupt[0] = 10.0
    else:
        a.nonzero[0] = (143, 10.0)
    a.abrupt[1] = 10.002
    for ln in ["=   BAD TERMINATION OF ONE OF YOUR APPLICATION PROCESSES", "=   PID 101 RUNNING AT vm",
               "YOUR APPLICATION TERMINATED WITH THE EXIT STRING: Killed (signal 9)"]:
        emit.line(None, ln, True)
    f = a._first_failure()
    assert (f.rank, f.exit_code) == (1, 128 + 9) and "killed by signal 9 (pid 101)" in f.what
    emit.untagged.clear()  # without the banner the scans' order decides: rank 0, seen first
    assert a._first_failure().rank == 0


def test_nonzero_status_is_dated_by_its_file(tmp_path):
    a, _ = _attempt(tmp_path)
    for r, pid in ((0, os.getpid()), (1, os.getpid())):
        (tmp_path / f"rank{r}.pid").write_text(str(pid))
    (tmp_path / "rank1.exit").write_text("3")
    os.utime(tmp_path / "rank1.exit", (1000.0, 1000.0))
    a._scan()
    assert a.nonzero == {1: (3, 1000.0)} and a.abrupt == {}
    f = a._first_failure()
    assert (f.rank, f.exit_code, f.time) == (1, 3, 1000.0) and "exited with code 3" in f.what


def test_rank_killed_by_the_teardown_is_not_the_culprit(tmp_path):
    """Rank 1 exits with 5; vt-launch's teardown then kills rank 0 with SIGTERM, and Hydra's banner names
    rank 0 (its only 'bad termination'). Rank 1 failed first."""
    a, emit = _attempt(tmp_path)
    a.pids = {0: 100, 1: 101}
    a.nonzero[1] = (5, 10.0)
    a.stopped_at = 11.0
    a.abrupt[0] = 11.05
    for ln in ["=   PID 100 RUNNING AT vm", "YOUR APPLICATION TERMINATED WITH THE EXIT STRING: Terminated (signal 15)"]:
        emit.line(None, ln, True)
    f = a._first_failure()
    assert (f.rank, f.exit_code) == (1, 5) and "exited with code 5" in f.what
