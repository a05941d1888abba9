"""What the event ring costs: per record() in off/basic/full, and per training step in basic.

    python benchmarks/observe_overhead.py            # ~1 minute on a laptop CPU
    python benchmarks/observe_overhead.py --quick    # fewer steps (smoke run)

1. record(): a collective-start event with the fields the collectives layer passes, and a bare
   mark, each timed against an empty Python function called with the same arguments (ratio 1.0 =
   the cost of calling any function; the recording work is the excess).
2. Step time: the reverse-task training step of examples/minigpt_reverse.py (GPT forward, loss,
   backward, grad clipping, AdamW), wrapped in a span, plus the events one data-parallel rank
   records per step (one gradient all_reduce: enqueue/start/complete) -- single-process runs
   record no collectives of their own. Modes alternate in short blocks so drift hits both alike;
   the ratio compares medians. Falls back to a small MLP if the example cannot be imported.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import timeit

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import vibetensor as vt  # noqa: E402
import vibetensor.observe as obs  # noqa: E402
from vibetensor.observe import EventKind, collective, record  # noqa: E402

MODES = ("off", "basic", "full")
EVENTS_PER_STEP = 5  # span begin/end + all_reduce enqueue/start/complete


def _empty(kind, name="", **fields):
    return -1


def per_record(number: int) -> list[dict]:
    g = {"record": record, "empty": _empty, "K": EventKind.COLLECTIVE_START, "M": EventKind.MARK}
    coll = "group='world', coll_seq=7, op='sum', dtype='float32', count=1024, nbytes=4096, device='cpu:0'"
    rows = []
    for label, stmt in (("collective event", f"FN(K, 'all_reduce', {coll})"), ("mark", "FN(M, 'tick')")):
        ref = min(timeit.repeat(stmt.replace("FN", "empty"), number=number, repeat=7, globals=g)) / number
        for m in MODES:
            obs.set_mode(m)
            obs.set_capacity(2000)
            t = min(timeit.repeat(stmt.replace("FN", "record"), number=number, repeat=7, globals=g)) / number
            rows.append({"event": label, "mode": m, "ns": t * 1e9, "ref_ns": ref * 1e9, "ratio": t / ref})
    obs.set_mode("basic")
    return rows


def _reverse_task_step():
    """(step function, description) for the reverse-task GPT, or None if the example is unavailable."""
    try:
        sys.path.insert(0, os.path.join(os.path.dirname(HERE), "examples"))
        import minigpt_reverse as mr
        from gpt import GPT, GPTConfig, lm_loss
    except Exception as exc:  # the example is written by another part of the project
        print(f"(reverse-task example unavailable: {exc!r}; using an MLP)")
        return None
    cfg = mr.CONFIGS["small"]
    model = GPT(GPTConfig(vocab=mr.VOCAB, seq=mr.SEQ, dim=cfg["dim"], layers=cfg["layers"], heads=cfg["heads"]))
    opt = vt.optim.AdamW(model.parameters(), lr=cfg["lr"], betas=(0.9, 0.98), weight_decay=0.01)
    rng = np.random.default_rng(0)
    batch = cfg["batch"]
    x, y = mr.inputs_targets(*mr.make_batch(rng, batch))
    xt, yt = vt.tensor(x), vt.tensor(y)
    nbytes = sum(p.numel() for p in model.parameters()) * 4

    def step(i):
        with obs.span("step"):
            loss = lm_loss(model(xt), yt)
            opt.zero_grad()
            loss.backward()
            _grad_all_reduce(i, nbytes)
            vt.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        return loss

    return step, f"reverse-task GPT (dim {cfg['dim']}, {cfg['layers']} layers, batch {batch} x {mr.SEQ} tokens)"


def _mlp_step():
    rng = np.random.default_rng(0)
    w1 = vt.tensor(rng.standard_normal((64, 128)).astype(np.float32) * 0.05, requires_grad=True)
    w2 = vt.tensor(rng.standard_normal((128, 64)).astype(np.float32) * 0.05, requires_grad=True)
    x = vt.tensor(rng.standard_normal((32, 64)).astype(np.float32))

    def step(i):
        with obs.span("step"):
            h = vt.matmul(x, w1)
            h = h * (h > 0)
            loss = vt.sum(vt.matmul(h, w2) * vt.matmul(h, w2))
            loss.backward()
            _grad_all_reduce(i, (w1.numel() + w2.numel()) * 4)
            with vt.no_grad():
                for w in (w1, w2):
                    w -= 1e-4 * w.grad
                    w.grad = None
        return loss

    return step, "MLP 64-128-64, batch 32"


def _grad_all_reduce(i, nbytes):
    """The events one DDP rank records for a gradient all_reduce (no data moves here)."""
    collective.enqueue("world", i, "all_reduce", op="sum", dtype="float32", count=nbytes // 4, nbytes=nbytes,
                       device="cpu")
    tok = collective.begin("world", i, "all_reduce", op="sum", dtype="float32", count=nbytes // 4,
                           nbytes=nbytes, device="cpu")
    collective.end(tok)


def step_overhead(rounds: int, block: int, model: str, modes=MODES) -> dict:
    made = _reverse_task_step() if model == "gpt" else None
    step, desc = made or _mlp_step()
    for i in range(3):  # warm-up: allocations, caches
        step(i)
    wall = {m: [] for m in modes}
    cpu = {m: [] for m in modes}
    i = 0
    for r in range(rounds):
        k = r % len(modes)
        order = modes[k:] + modes[:k]  # rotate so no mode always runs first
        for m in order:
            obs.set_mode(m)
            for _ in range(block):
                t0, c0 = time.perf_counter(), time.process_time()
                step(i)
                wall[m].append(time.perf_counter() - t0)
                cpu[m].append(time.process_time() - c0)
                i += 1
    obs.set_mode("basic")
    # Paired ratios (each round's basic step over the same round's off step) cancel slow drift.
    paired = {m: statistics.median(a / b for a, b in zip(wall[m], wall["off"])) for m in modes}
    paired_cpu = {m: statistics.median(a / b for a, b in zip(cpu[m], cpu["off"])) for m in modes}
    return {"model": desc, "steps_per_mode": rounds * block,
            "wall": {m: statistics.median(v) for m, v in wall.items()},
            "cpu": {m: statistics.median(v) for m, v in cpu.items()},
            "paired": paired, "paired_cpu": paired_cpu, "events_per_step": EVENTS_PER_STEP}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer repetitions (smoke run)")
    p.add_argument("--model", choices=("gpt", "mlp", "both"), default="both")
    p.add_argument("--rounds", type=int, default=40,
                   help="GPT steps per mode (the MLP runs 5x as many); modes interleave step by step")
    args = p.parse_args(argv)
    number = 20_000 if args.quick else 200_000
    print(f"observe overhead ({sys.version.split()[0]}, numpy {np.__version__}, capacity {obs.capacity()})")
    print("\n1. cost per record(), relative to an empty Python function called with the same arguments")
    print(f"{'event':<18}{'mode':<7}{'ns/call':>9}{'empty fn ns':>13}{'ratio':>8}")
    rows = per_record(number)
    for r in rows:
        print(f"{r['event']:<18}{r['mode']:<7}{r['ns']:>9.0f}{r['ref_ns']:>13.0f}{r['ratio']:>8.2f}")
    rec = {r["mode"]: r["ns"] for r in rows if r["event"] == "collective event"}
    # The GPT step is ~10^6 times longer than an event, so it runs off/basic only, for more rounds.
    runs = [("gpt", 2 if args.quick else args.rounds, ("off", "basic")),
            ("mlp", 10 if args.quick else 5 * args.rounds, MODES)]
    out = {}
    for model, rounds, modes in runs if args.model == "both" else [r for r in runs if r[0] == args.model]:
        s = out[model] = step_overhead(rounds, 1, model, modes)
        print(f"\n2. step time: {s['model']}; span + 3 collective events per step; "
              f"{s['steps_per_mode']} steps per mode, interleaved step by step")
        for m in modes:
            w, c = s["wall"][m], s["cpu"][m]
            print(f"   {m:<6} median wall {w * 1e3:9.3f} ms/step (ratio {w / s['wall']['off']:.4f}), "
                  f"cpu {c * 1e3:9.3f} ms/step (ratio {c / s['cpu']['off']:.4f}); paired ratio to off: "
                  f"wall {s['paired'][m]:.4f}, cpu {s['paired_cpu'][m]:.4f}")
        est = EVENTS_PER_STEP * max(0.0, rec["basic"] - rec["off"]) * 1e-9 / s["wall"]["off"]
        print(f"   basic overhead, measured (paired medians): {(s['paired']['basic'] - 1) * 100:+.2f}% wall, "
              f"{(s['paired_cpu']['basic'] - 1) * 100:+.2f}% cpu (noise: other processes share the cores)")
        print(f"   basic overhead, from part 1: {EVENTS_PER_STEP} events x {rec['basic'] - rec['off']:.0f} ns "
              f"= {est * 100:.5f}% of step time (target <= 2%)")
    return out


if __name__ == "__main__":
    main()
