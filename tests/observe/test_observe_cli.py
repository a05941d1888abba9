import json
import os
import subprocess
import sys

from tests.observe.synth import four_ranks_rank2_skips_5, run_rank

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def vt_trace(*args):
    env = {**os.environ, "PYTHONPATH": REPO}
    return subprocess.run([sys.executable, "-m", "vibetensor.observe.cli", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=120)


def test_merge_and_analyze_a_hang(tmp_path):
    four_ranks_rank2_skips_5(tmp_path)
    out = tmp_path / "trace.json"
    p = vt_trace("merge", tmp_path, "-o", out)
    assert p.returncode == 0, p.stderr
    trace = json.load(open(out))
    evs = trace["traceEvents"]
    assert {e["pid"] for e in evs} == {0, 1, 2, 3}
    assert all({"ph", "ts", "pid", "tid"} <= set(e) for e in evs)
    names = {e["args"]["name"] for e in evs if e["name"] == "process_name"}
    assert all(any(n.startswith(f"rank {r} ") for n in names) for r in range(4))
    assert len([e for e in evs if e["ph"] == "X" and e["name"] == "all_reduce"]) == 6 * 3 + 5

    p = vt_trace("analyze", tmp_path)
    assert p.returncode == 1, p.stderr
    assert "rank 2 never joined it" in p.stdout and "all_reduce #5" in p.stdout
    p = vt_trace("analyze", "--json", tmp_path)
    assert p.returncode == 1 and json.loads(p.stdout)["groups"][0]["never_joined"] == [2]


def test_analyze_consistent_exit_0(tmp_path):
    for r in range(2):
        run_rank(r, 2, [("broadcast", "int64", 3, "completed")] * 2, tmp_path)
    p = vt_trace("analyze", tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "result: all ranks consistent" in p.stdout


def test_bad_input_exit_2(tmp_path):
    p = vt_trace("analyze", tmp_path / "missing")
    assert p.returncode == 2 and "no such file or directory" in p.stderr
    p = vt_trace("merge", tmp_path, "-o", tmp_path / "t.json")
    assert p.returncode == 2 and "no event dumps" in p.stderr
    (tmp_path / "vt_events_rank0_pid1.json").write_text("{not json")
    p = vt_trace("analyze", tmp_path)
    assert p.returncode == 2 and "not valid JSON" in p.stderr and "vt_events_rank0_pid1.json" in p.stderr
    p = vt_trace("frobnicate", tmp_path)
    assert p.returncode == 2 and "invalid choice" in p.stderr
    p = vt_trace()
    assert p.returncode == 2
