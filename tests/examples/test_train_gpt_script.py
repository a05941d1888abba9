"""benchmarks/train_gpt.py's timing loop (alternating blocks) and a CPU run of the script at a toy size."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
for d in (ROOT / "benchmarks", ROOT / "examples"):
    if str(d) not in sys.path:
        sys.path.insert(0, str(d))

import train_gpt  # noqa: E402


class _Loss:
    def __init__(self, v):
        self.v = v

    def item(self):
        return self.v


def test_interleaved_alternates_sides_and_keeps_each_sides_step_order():
    calls, syncs = [], []

    def side(k):
        return (lambda i: calls.append((k, i)) or _Loss(10 * k + i), lambda: syncs.append(k), lambda: 0)

    per_step, losses, ratios = train_gpt.interleaved([side(0), side(1)], steps=7, rounds=3)
    assert [i for k, i in calls if k == 0] == list(range(7)) == [i for k, i in calls if k == 1]
    # blocks of steps 0-1, 2-4, 5-6: side 0 first in rounds 0 and 2, side 1 first in round 1, with a
    # synchronize either side of each block
    assert syncs == [0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1]
    assert [k for k, i in calls if i in (0, 3, 5)] == [0, 1, 1, 0, 0, 1]
    assert losses == [6.0, 16.0] and len(ratios) == 3 and all(t > 0 for t in per_step)
    # more rounds than steps: one step a block
    calls.clear()
    _, _, ratios = train_gpt.interleaved([side(0), side(1)], steps=2, rounds=5)
    assert len(ratios) == 2 and [i for k, i in calls if k == 0] == [0, 1]


def test_cpu_run_matches_torch_and_sequential_losses(capsys):
    pytest.importorskip("torch")
    train_gpt.CONFIGS["toy"] = (16, 2, 2, 2, 8, 36)
    try:
        rows = train_gpt.main(["--device", "cpu", "--configs", "toy", "--modes", "fp32", "--steps", "5",
                               "--rounds", "3"])
        seq = train_gpt.main(["--device", "cpu", "--configs", "toy", "--modes", "fp32", "--steps", "5",
                              "--rounds", "1"])
    finally:
        del train_gpt.CONFIGS["toy"]
    (r,), (s,) = rows, seq
    assert r[:2] == ("toy", "fp32")
    assert r[10] == s[10] and r[11] == s[11]  # interleaving changes no loss, on either side
    np.testing.assert_allclose(r[10], r[11], rtol=1e-5)  # vt float32 vs torch float32 after 5 steps
    lo, hi = map(float, r[5].split("-"))
    assert 0 < lo <= r[4] <= hi
    out = capsys.readouterr().out
    assert "5 steps in 3 alternating blocks a side" in out and "toy " in out


def test_bad_arguments_name_the_values():
    with pytest.raises(SystemExit, match="unknown config 'nope'"):
        train_gpt.main(["--device", "cpu", "--configs", "nope"])
    with pytest.raises(SystemExit, match=r"--rounds \(0\)"):
        train_gpt.main(["--device", "cpu", "--configs", "reverse", "--rounds", "0"])
