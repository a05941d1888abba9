"""Summarise a py-spy raw profile of eager train steps: share of the steady-state samples by function
(self or inclusive) or by line. py-spy samples the stack without tracing calls, so unlike cProfile it
does not over-weight call-heavy Python.

Record (py-spy: ``pip download py-spy`` where PyPI is reachable, then carry the binary):
    py-spy record -r 1000 -f raw -o prof.txt -- python3 scripts/spy_report.py --run medium --amp --steps 300
Report:
    python scripts/spy_report.py prof.txt [--by self|incl|line] [--top 60]
(``--run tiny --device cpu`` runs medium's op structure at negligible size on the CPU.)
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
_MARK = "timed_steps ("  # the frame whose samples count (warm-up and setup are left out)


def timed_steps(step, n):
    for _ in range(n):
        step()


def run(config, amp, steps, device):
    sys.path[:0] = [os.path.join(HERE, ".."), os.path.join(HERE, "..", "benchmarks")]
    from profile_ops import vt_train_step
    from train_gpt import CONFIGS
    import vibetensor as vt
    cfg = (32, 8, 8, 1, 16, 64) if config == "tiny" else CONFIGS[config]  # tiny: medium's ops, no compute
    step = vt_train_step(cfg, amp, device)
    sync = vt.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(5):
        step()
    sync()
    timed_steps(step, steps)
    sync()


def report(path, by, top, mark):
    counts = collections.Counter()
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, n = line.rstrip().rpartition(" ")
            frames = stack.split(";")
            if not any(fr.startswith(mark) for fr in frames):
                continue
            n = int(n)
            total += n
            frames = [re.sub(r"\S*/site-packages/", "", fr) for fr in frames]
            if by == "line":
                counts[frames[-1]] += n
                continue
            names = [fr.rsplit(":", 1)[0] + ")" if ":" in fr else fr for fr in frames]
            for name in (set(names) if by == "incl" else names[-1:]):
                counts[name] += n
    print(f"{total} samples under a frame starting {mark!r}; share by {by}:")
    for k, v in counts.most_common(top):
        print(f"{v / max(total, 1) * 100:6.2f}%  {k}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("profile", nargs="?", help="py-spy raw output to summarise")
    ap.add_argument("--by", choices=("self", "incl", "line"), default="self")
    ap.add_argument("--top", type=int, default=60)
    ap.add_argument("--mark", default=_MARK, help="count samples under a frame starting with this")
    ap.add_argument("--run", metavar="CONFIG", help="instead: run train_gpt's vt step (to record), or tiny")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--amp", action="store_true")
    ap.add_argument("--steps", type=int, default=300)
    a = ap.parse_args()
    if a.run:
        run(a.run, a.amp, a.steps, a.device)
    elif a.profile:
        report(a.profile, a.by, a.top, a.mark)
    else:
        ap.error("give a profile to summarise, or --run CONFIG")


if __name__ == "__main__":
    main()
