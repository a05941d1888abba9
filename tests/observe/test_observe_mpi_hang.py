"""End to end on real ranks: one rank skips a collective; the dumps name it (mpich wheel, CPU)."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MPIEXEC = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))

HAVE_MPI4PY = importlib.util.find_spec("mpi4py") is not None
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(MPIEXEC is None or not HAVE_MPI4PY,
                                 reason="needs mpiexec and mpi4py (pip install vibetensor[mpi])")]


def test_rank_skipping_a_collective_is_named(tmp_path):
    script = tmp_path / "skip.py"
    script.write_text(textwrap.dedent("""
        import os, time
        import vibetensor as vt
        dist = vt.collectives
        dist.init_process_group("mpi")
        vt.observe.install_exit_dump()
        t = vt.ones(8)
        for i in range(3):
            dist.all_reduce(t)
        try:
            if dist.get_rank() != 1:
                dist.all_reduce(t, timeout=3)   # rank 1 skips this one
            dist.barrier(timeout=4)
        except dist.CollectiveTimeout:  # it dumped; give the other ranks time to time out and dump too
            time.sleep(3)
            os._exit(1)
    """))
    dumps = tmp_path / "dumps"
    env = {**os.environ, "VT_DUMP_DIR": str(dumps), "PYTHONPATH": REPO}
    subprocess.run([MPIEXEC, "-n", "3", sys.executable, str(script)], env=env, capture_output=True, text=True,
                   timeout=120)
    files = sorted(os.listdir(dumps))
    assert [f for f in files if f.startswith("vt_events_rank")], files
    p = subprocess.run([sys.executable, "-m", "vibetensor.observe.cli", "analyze", "--json", str(dumps)], env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1, p.stdout + p.stderr
    rep = json.loads(p.stdout)
    (world,) = [g for g in rep["groups"] if g["group"] == "world"]
    assert sorted(rep["ranks"]) == [0, 1, 2], rep["text"]
    assert world["divergence"] == 4 and world["never_joined"] == [1], rep["text"]
    assert "rank 1" in rep["text"]
    p = subprocess.run([sys.executable, "-m", "vibetensor.observe.cli", "merge", str(dumps), "-o",
                        str(tmp_path / "trace.json")], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    evs = json.load(open(tmp_path / "trace.json"))["traceEvents"]
    assert {e["pid"] for e in evs} >= {0, 2} and all({"ph", "ts", "pid", "tid"} <= set(e) for e in evs)
