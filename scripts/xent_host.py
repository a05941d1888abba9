"""Host cost of a medium-sized cross_entropy forward and forward+backward on CUDA (wall time per call),
then a cProfile of the step (F.cross_entropy on (8192, 256) float32 logits: the medium GPT's shape).
Usage: python scripts/xent_host.py"""
import cProfile
import pstats
import time

import numpy as np

import vibetensor as vt

F = vt.nn.functional
r = np.random.default_rng(0)
x = vt.tensor(r.standard_normal((8192, 256)).astype(np.float32), device="cuda", requires_grad=True)
t = vt.tensor(r.integers(0, 256, 8192), device="cuda")


def step():
    loss = F.cross_entropy(x, t)
    loss.backward()
    x.grad = None


for _ in range(20):
    step()
vt.cuda.synchronize()
for name, fn in [("fwd", lambda: F.cross_entropy(x.detach(), t)), ("fwd+bwd", step)]:
    t0 = time.perf_counter()
    for _ in range(200):
        fn()
    vt.cuda.synchronize()
    print(f"{name}: {(time.perf_counter() - t0) / 200 * 1e6:.1f} us/call")
pr = cProfile.Profile()
pr.enable()
for _ in range(200):
    step()
vt.cuda.synchronize()
pr.disable()
pstats.Stats(pr).sort_stats("tottime").print_stats(22)
