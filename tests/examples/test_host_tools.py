"""scripts/ab_host.py and scripts/spy_report.py on the CPU: the A/B runs this tree against a git revision
in one process (both copies train the same toy model to the same loss), and the report counts only
samples under the marked frame."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import spy_report  # noqa: E402


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs the git checkout")
def test_ab_host_runs_both_copies_to_the_same_loss():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "ab_host.py"), "--base", "HEAD", "--device", "cpu",
                          "--config", "tiny", "--steps", "2", "--rounds", "2"], capture_output=True, text=True,
                         timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip().splitlines()[-1]
    assert line.startswith("cpu tiny amp=0: this tree") and "2 rounds of 2 steps" in line
    new, base = line.rsplit("losses ", 1)[1].split(" / ")
    # one seed, one toy model: the two copies (the tree and HEAD, equal on a clean checkout) train alike
    assert float(new) == pytest.approx(float(base), rel=1e-3)


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs the git checkout")
def test_ab_host_make_base_writes_a_renamed_copy(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "scripts" / "ab_host.py"), "--make-base", "HEAD", str(tmp_path)],
                   check=True, timeout=120, cwd=ROOT)
    init = (tmp_path / "vtbase" / "__init__.py").read_text()
    assert "vtbase" in init and "vibetensor" not in init
    assert (tmp_path / "vtbase" / "cuda" / "kernels" / "src_flash.cu").exists()


def test_spy_report_counts_samples_under_the_mark(tmp_path, capsys):
    raw = tmp_path / "prof.txt"
    raw.write_text("<module> (a.py:1);timed_steps (s.py:5);f (x.py:3);g (y.py:7) 6\n"
                   "<module> (a.py:1);timed_steps (s.py:5);f (x.py:4) 2\n"
                   "<module> (a.py:1);setup (s.py:9);g (y.py:7) 50\n")  # outside the timed steps
    spy_report.report(str(raw), "self", 10, spy_report._MARK)
    text = capsys.readouterr().out
    assert text.startswith("8 samples") and " 75.00%  g (y.py)" in text and " 25.00%  f (x.py)" in text
    spy_report.report(str(raw), "incl", 10, spy_report._MARK)
    assert "100.00%  f (x.py)" in capsys.readouterr().out
    spy_report.report(str(raw), "line", 10, spy_report._MARK)
    assert " 75.00%  g (y.py:7)" in capsys.readouterr().out
