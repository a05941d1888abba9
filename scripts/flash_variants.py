"""Device time of the tensor-core flash kernels, variant by variant, in one process (GPU machine).

src_flash_tc.cu keeps earlier or alternative behaviours behind NVRTC macros; ``kernels.flash.TC_OPTIONS``
selects them (one compiled module per option set). This times ``flash_fwd`` and ``flash_bwd`` (causal,
bfloat16) per shape and variant in interleaved rounds (best of the rounds' medians) and prints each
variant's largest output difference from the first one.

    python scripts/flash_variants.py [--variants default,in-order,bwd-in-place,fwd-tile64] [--reps 15]
"""
from __future__ import annotations

import argparse

import numpy as np

VARIANTS = {
    "default": (),
    "in-order": ("-DVT_TC_HEAVY_FIRST=0",),          # causal row tiles in blockIdx order
    "bwd-in-place": ("-DVT_TC_BWD_STAGES=1",),       # one in-place tile stage in dQ and dK/dV
    "fwd-tile64": ("-DVT_TC_FWD_TILE_BIG=64",),      # 64-key forward tiles above D = 64 (one stage)
}
SHAPES = [(16, 12, 512, 64), (32, 8, 256, 64), (8, 16, 1024, 96), (8, 16, 1024, 128), (2, 16, 4096, 128),
          (4, 4, 64, 32)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"of {', '.join(VARIANTS)}")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    names = args.variants.split(",")
    bad = [n for n in names if n not in VARIANTS]
    if bad:
        raise SystemExit(f"unknown variants {bad}; choose from {', '.join(VARIANTS)}")
    import cupy as cp

    import vibetensor as vt
    from vibetensor.cuda import kernels as K
    from vibetensor.cuda.kernels import flash as FL

    def timed(fn):
        fn()
        cp.cuda.Device().synchronize()
        ts = []
        for _ in range(args.reps):
            e0, e1 = cp.cuda.Event(), cp.cuda.Event()
            e0.record()
            fn()
            e1.record()
            e1.synchronize()
            ts.append(cp.cuda.get_elapsed_time(e0, e1))
        return float(np.median(ts))

    print(f"{vt.cuda.get_device_name(0)}: device ms per call, fwd / bwd, causal bfloat16")
    try:
        for B, H, T, D in SHAPES:
            rng = np.random.default_rng(0)
            q, k, v, g = (vt.tensor(rng.standard_normal((B, H, T, D)), dtype=vt.bfloat16, device="cuda")._data
                          for _ in range(4))
            sc = D ** -0.5
            res = {n: ([], []) for n in names}
            ref, diffs = None, {}
            for _ in range(args.rounds):
                for name in names:
                    FL.TC_OPTIONS = VARIANTS[name]
                    o, lse = K.flash_fwd(q, k, v, sc, True)
                    outs = [x.astype(cp.float32) for x in (o, *K.flash_bwd(g, q, k, v, sc, True, o, lse))]
                    if ref is None:
                        ref = outs
                    diffs[name] = max(float(cp.abs(a - b).max()) for a, b in zip(outs, ref))
                    res[name][0].append(timed(lambda: K.flash_fwd(q, k, v, sc, True)))
                    res[name][1].append(timed(lambda: K.flash_bwd(g, q, k, v, sc, True, o, lse)))
            cells = "  ".join(f"{n} {min(f):.3f}/{min(b):.3f} (diff {diffs[n]:.2g})" for n, (f, b) in res.items())
            print(f"{B}x{H}x{T}x{D}: {cells}", flush=True)
    finally:
        FL.TC_OPTIONS = ()


if __name__ == "__main__":
    main()
