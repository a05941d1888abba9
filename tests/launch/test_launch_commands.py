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
