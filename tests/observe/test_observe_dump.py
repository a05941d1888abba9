import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import vibetensor.observe as obs
from vibetensor import _env
from vibetensor.observe import dumpfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_dump_contents(tmp_path):
    obs.set_rank(2, 4)
    obs.mark("before dump")
    obs.counter_add("t_dump.c", 3)
    t0 = time.time_ns()
    path = obs.dump("collective timeout", str(tmp_path))
    assert path == str(tmp_path / f"vt_events_rank2_pid{os.getpid()}.json")
    d = json.load(open(path))
    assert (d["rank"], d["world_size"], d["pid"], d["reason"]) == (2, 4, os.getpid(), "collective timeout")
    assert d["hostname"] and t0 <= d["wall_time_ns"] <= time.time_ns()
    assert [e["name"] for e in d["events"]][-2:] == ["before dump", "observe.dump"]
    assert d["stats"]["t_dump.c"] == 3 and d["mode"] == "basic" and d["capacity"] == 2000
    assert any(t["name"] == "MainThread" for t in d["threads"])
    assert [p for p in os.listdir(tmp_path) if p.endswith(".tmp")] == []


def test_dump_dir_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("VT_DUMP_DIR", str(tmp_path / "dumps"))
    _env.reload()
    try:
        obs.set_rank(0)
        path = obs.dump("env")
    finally:
        monkeypatch.delenv("VT_DUMP_DIR")
        _env.reload()
    assert os.path.dirname(path) == str(tmp_path / "dumps") and os.path.exists(path)


def test_dump_is_atomic(tmp_path, monkeypatch):
    obs.set_rank(0)
    good = obs.dump("first", str(tmp_path))
    before = open(good).read()

    def broken(obj, f, **kw):
        f.write('{"rank": 0, "events": [')  # half written, then the writer dies
        raise OSError("disk full")

    monkeypatch.setattr(dumpfile.json, "dump", broken)
    with pytest.raises(OSError, match="disk full"):
        obs.dump("second", str(tmp_path))
    assert open(good).read() == before  # the old dump is untouched, nothing half-written remains
    assert sorted(os.listdir(tmp_path)) == [os.path.basename(good)]


def test_signal_dump_chains_previous_handler(tmp_path):
    seen = []
    prev = signal.signal(signal.SIGUSR1, lambda s, f: seen.append(s))
    try:
        obs.set_rank(5)
        obs.install_signal_dump(directory=str(tmp_path))
        assert obs.install_signal_dump(directory=str(tmp_path)) is not None  # idempotent
        os.kill(os.getpid(), signal.SIGUSR1)
        deadline = time.time() + 5
        while not seen and time.time() < deadline:
            time.sleep(0.01)
        assert seen == [signal.SIGUSR1]  # called once: the handler was not wrapped twice
        d = json.load(open(tmp_path / f"vt_events_rank5_pid{os.getpid()}.json"))
        assert d["reason"] == "signal SIGUSR1"
    finally:
        obs.uninstall_signal_dump()
        signal.signal(signal.SIGUSR1, prev)


def test_sigusr1_dumps_a_running_subprocess(tmp_path):
    script = textwrap.dedent("""
        import sys, time
        import vibetensor.observe as obs
        obs.set_rank(3, 4)
        obs.install_signal_dump()
        obs.mark("ready")
        print("ready", flush=True)
        for i in range(6000):
            obs.mark("tick")
            time.sleep(0.005)
    """)
    env = {**os.environ, "VT_DUMP_DIR": str(tmp_path), "PYTHONPATH": REPO}
    p = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        os.kill(p.pid, signal.SIGUSR1)
        path = tmp_path / f"vt_events_rank3_pid{p.pid}.json"
        deadline = time.time() + 20
        while not path.exists() and time.time() < deadline:
            time.sleep(0.02)
        assert path.exists(), p.stderr.read() if p.poll() is not None else "no dump appeared"
        d = json.load(open(path))
        assert d["reason"] == "signal SIGUSR1" and d["rank"] == 3 and d["pid"] == p.pid
        assert "ready" in [e["name"] for e in d["events"]]
        assert p.poll() is None  # SIGUSR1's default action (terminate) was not chained
    finally:
        p.kill()
        p.wait()
    assert "event ring dumped to" in p.stderr.read()


def test_load_dump_errors(tmp_path):
    with pytest.raises(dumpfile.DumpError, match="no such file or directory"):
        obs.load_dumps(str(tmp_path / "nope"))
    with pytest.raises(dumpfile.DumpError, match="no event dumps"):
        obs.load_dumps(str(tmp_path))
    bad = tmp_path / "vt_events_rank0_pid1.json"
    bad.write_text('{"rank": 0, "events": [')
    with pytest.raises(dumpfile.DumpError, match="not valid JSON"):
        obs.load_dumps(str(tmp_path))
    bad.write_text('{"rank": 0}')
    with pytest.raises(dumpfile.DumpError, match="missing 'pid', 'events'"):
        obs.load_dumps(str(tmp_path))
    bad.write_text('{"rank": 0, "pid": 1, "events": [{"seq": 1}]}')
    with pytest.raises(dumpfile.DumpError, match="event #0 is malformed"):
        obs.load_dumps(str(tmp_path))


def test_load_dumps_keeps_newest_per_rank(tmp_path):
    for pid, wall in ((10, 100), (11, 200)):
        (tmp_path / f"vt_events_rank0_pid{pid}.json").write_text(
            json.dumps({"rank": 0, "pid": pid, "events": [], "wall_time_ns": wall}))
    dumps, notes = obs.load_dumps(str(tmp_path))
    assert [d["pid"] for d in dumps] == [11] and "ignoring older vt_events_rank0_pid10.json" in notes[0]


def test_exit_dump(tmp_path):
    script = ("import vibetensor.observe as obs; obs.set_rank(1, 2); obs.install_exit_dump(); "
              "obs.install_exit_dump(); obs.mark('bye')")
    env = {**os.environ, "VT_DUMP_DIR": str(tmp_path), "PYTHONPATH": REPO}
    p = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    (f,) = os.listdir(tmp_path)
    d = json.load(open(tmp_path / f))
    assert f.startswith("vt_events_rank1_pid") and d["reason"] == "process exit"
    assert [e["name"] for e in d["events"]].count("observe.dump") == 1 and "bye" in [e["name"] for e in d["events"]]
