"""rank_env.resolve: precedence, local-rank sources, errors (pure environment dicts, no processes)."""
import sys
import types

import pytest

from vibetensor.rank_env import RankEnvError, RankInfo, export_env, resolve, under_mpi_launcher

OMPI = {"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "8", "OMPI_COMM_WORLD_LOCAL_RANK": "1",
        "OMPI_COMM_WORLD_LOCAL_SIZE": "2"}
PMI = {"PMI_RANK": "5", "PMI_SIZE": "6", "MPI_LOCALRANKID": "2", "MPI_LOCALNRANKS": "3"}
SLURM = {"SLURM_PROCID": "4", "SLURM_NTASKS": "6", "SLURM_LOCALID": "0", "SLURM_STEP_ID": "0",
         "SLURM_NTASKS_PER_NODE": "2"}
TORCH = {"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
VT = {"VT_RANK": "2", "VT_WORLD_SIZE": "3", "VT_LOCAL_RANK": "0", "VT_LOCAL_WORLD_SIZE": "1"}


@pytest.fixture(autouse=True)
def _no_mpi4py(monkeypatch):
    monkeypatch.delitem(sys.modules, "mpi4py.MPI", raising=False)


@pytest.mark.parametrize("env,expect,launcher", [
    (OMPI, (3, 1, 8, 2), "openmpi"),
    (PMI, (5, 2, 6, 3), "mpich"),
    (SLURM, (4, 0, 6, 2), "slurm"),
    (TORCH, (1, 1, 4, 2), "torchrun"),
    (VT, (2, 0, 3, 1), "vt-launch"),
])
def test_each_source(env, expect, launcher):
    info = resolve(environ=dict(env))
    assert (info.rank, info.local_rank, info.world_size, info.local_world_size) == expect
    assert info.launcher == launcher
    assert set(info.sources) == {"rank", "local_rank", "world_size", "local_world_size"}


def test_precedence_order():
    # every source at once: VT_* wins, then Open MPI, MPICH, SLURM, torchrun
    chain = [(VT, "vt-launch"), (OMPI, "openmpi"), (PMI, "mpich"), (SLURM, "slurm"), (TORCH, "torchrun")]
    for i, (_, launcher) in enumerate(chain):
        env = {}
        for e, _ in chain[i:]:
            env.update(e)
        assert resolve(environ=env).launcher == launcher


def test_sources_name_the_variables():
    info = resolve(environ=dict(PMI))
    assert info.sources == {"rank": "PMI_RANK", "local_rank": "MPI_LOCALRANKID", "world_size": "PMI_SIZE",
                            "local_world_size": "MPI_LOCALNRANKS"}


def test_single_process_default():
    info = resolve(environ={})
    assert info == RankInfo(0, 0, 1, 1, info.source, None) and not info.is_distributed
    assert info.sources["rank"] == "single-process"


def test_slurm_batch_step_is_one_process():
    env = {k: v for k, v in SLURM.items() if k != "SLURM_STEP_ID"}
    assert resolve(environ=env).launcher is None
    assert not under_mpi_launcher(env) and under_mpi_launcher(SLURM)


@pytest.mark.parametrize("spec,node,expect", [("2(x3),1", 1, 2), ("2(x3),1", 3, 1), ("4", 0, 4)])
def test_slurm_tasks_per_node(spec, node, expect):
    env = {"SLURM_PROCID": "0", "SLURM_NTASKS": "7", "SLURM_LOCALID": "0", "SLURM_STEP_ID": "1",
           "SLURM_TASKS_PER_NODE": spec, "SLURM_NODEID": str(node)}
    info = resolve(environ=env)
    assert info.local_world_size == expect and info.sources["local_world_size"] == "SLURM_TASKS_PER_NODE"


def test_local_rank_never_guessed():
    with pytest.raises(RankEnvError, match="LOCAL_RANK is unset.*never guessed"):
        resolve(environ={"RANK": "1", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"})


def test_one_rank_needs_no_local_source():
    info = resolve(environ={"RANK": "0", "WORLD_SIZE": "1"})
    assert (info.local_rank, info.local_world_size) == (0, 1)


@pytest.mark.parametrize("env,match", [
    ({"PMI_RANK": "2", "PMI_SIZE": "2", "MPI_LOCALRANKID": "0", "MPI_LOCALNRANKS": "1"}, "0 <= rank < world_size"),
    ({"PMI_RANK": "x", "PMI_SIZE": "2"}, "PMI_RANK='x' is not an integer"),
    ({"RANK": "0", "WORLD_SIZE": "4", "LOCAL_RANK": "3", "LOCAL_WORLD_SIZE": "2"}, "inconsistent"),
])
def test_inconsistent_values(env, match):
    with pytest.raises(RankEnvError, match=match):
        resolve(environ=env)


class _FakeComm:
    def __init__(self, rank, size):
        self.rank, self.size = rank, size

    def Get_rank(self):
        return self.rank

    def Get_size(self):
        return self.size

    def Split_type(self, kind):
        assert kind == "shared"
        return _FakeComm(self.rank % 2, 2)

    def Free(self):
        pass


def _fake_mpi(rank, size):
    return types.SimpleNamespace(COMM_WORLD=_FakeComm(rank, size), COMM_TYPE_SHARED="shared",
                                 Is_initialized=lambda: True, Is_finalized=lambda: False)


def test_mpi4py_fallback_when_imported(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py.MPI", _fake_mpi(3, 4))
    info = resolve(environ={})
    assert (info.rank, info.local_rank, info.world_size, info.local_world_size) == (3, 1, 4, 2)
    assert info.launcher == "mpi4py" and "Split_type" in info.sources["local_rank"]


def test_mpi_split_fills_missing_local_rank(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py.MPI", _fake_mpi(5, 6))
    info = resolve(environ={"PMI_RANK": "5", "PMI_SIZE": "6"})
    assert (info.rank, info.local_rank, info.local_world_size) == (5, 1, 2)
    assert info.sources["rank"] == "PMI_RANK" and "Split_type" in info.sources["local_rank"]


def test_export_env_sets_torchrun_and_vt_names():
    env = {}
    export_env(resolve(environ=dict(OMPI)), env)
    assert env == {"RANK": "3", "VT_RANK": "3", "LOCAL_RANK": "1", "VT_LOCAL_RANK": "1", "WORLD_SIZE": "8",
                   "VT_WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "2", "VT_LOCAL_WORLD_SIZE": "2"}


def _import_vt(env_extra):
    import os
    import subprocess
    from pathlib import Path
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "OMPI_", "SLURM_", "MPI_LOCAL", "VT_", "RANK", "LOCAL_", "WORLD_"))}
    env.update(env_extra, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    code = ("import sys, os, vibetensor; print(sorted(m for m in ('mpi4py', 'cupy') if m in sys.modules), "
            "sys.excepthook is sys.__excepthook__, os.environ.get('RANK'), os.environ.get('VT_BOOTSTRAPPED'))")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


def test_import_time_bootstrap_is_inert_without_a_launcher():
    p = _import_vt({})
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["[]", "True", "None", "None"]


def test_import_time_bootstrap_under_mpi_vars():
    p = _import_vt({"PMI_RANK": "1", "PMI_SIZE": "3", "MPI_LOCALRANKID": "0", "MPI_LOCALNRANKS": "1"})
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["[]", "False", "1", "1"]
