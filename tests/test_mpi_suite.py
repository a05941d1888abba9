"""Runs the MPI tests (tests/collectives and tests/fabric/test_mpi_fabric.py, marker ``mpi``) under ``mpiexec -n 2`` and ``-n 4``.

Each rank runs pytest (rank 0 prints the summary, the others log to files shown on failure); any
failing rank fails the run; short collective timeouts, per-test timeouts and a wall-clock limit on
the whole run mean a hung rank cannot hang CI.
"""
import os
import shutil
import signal
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _mpiexec():
    cand = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return cand if os.path.exists(cand) else shutil.which("mpiexec")


def _have_mpi():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return _mpiexec() is not None


@pytest.mark.skipif(not _have_mpi(), reason="mpi4py / mpiexec not installed (pip install 'vibetensor[mpi]')")
@pytest.mark.parametrize("nranks,limit", [(2, 150), (4, 200)])
def test_mpi_suite(nranks, limit, tmp_path):
    env = dict(os.environ)
    for k in list(env):  # never inherit an outer job's rank variables
        if k.startswith(("PMI_", "OMPI_COMM_WORLD", "OMPI_UNIVERSE", "PMIX_", "VT_RANK", "VT_LOCAL", "VT_WORLD",
                         "SLURM_")):
            del env[k]
    env.update(VT_IN_MPI_SUITE="1", VT_COLLECTIVE_TIMEOUT="20", VT_MPI_LOG_DIR=str(tmp_path),
               VT_DUMP_DIR=str(tmp_path / "dumps"), PYTHONPATH=ROOT + os.pathsep + env.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [_mpiexec(), "-n", str(nranks), sys.executable, "-m", "tests.collectives.mpi_pytest",
           "-q", "--with-mpi", "-m", "mpi", "-p", "no:cacheprovider", "--timeout=60", "-x", "tests/collectives",
           "tests/fabric/test_mpi_fabric.py"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"mpiexec -n {nranks} did not finish within {limit} s (a hung rank?)\n{out[-6000:]}\n"
                    + _logs(tmp_path))
    print(out[-3000:])
    assert proc.returncode == 0, f"mpiexec -n {nranks} failed (exit {proc.returncode})\n{out[-8000:]}\n" + _logs(tmp_path)
    summary = [ln for ln in out.splitlines() if " in " in ln and ("passed" in ln or "failed" in ln)]
    assert summary and " passed" in summary[-1] and "failed" not in summary[-1], out[-2000:]


def _logs(d):
    parts = []
    for p in sorted(d.glob("rank*.log")):
        parts.append(f"---- {p.name} ----\n{p.read_text()[-4000:]}")
    return "\n".join(parts)
