"""GPU collectives in one process (run by the lead on a GPU machine; skipped without CUDA):
the local transport's ring over one GPU (four ranks sharing it), NCCL at world size 1, DDP on CUDA."""
import copy

import numpy as np
import pytest

import vibetensor as vt
from tests.collectives._ref import check, inp, ops_for, ref

dist = vt.collectives
pytestmark = pytest.mark.gpu
GPU_DTYPES = ["float16", "float32", "float64", "int32", "int64", "uint8", "bool"]


@pytest.fixture
def local_gpu():
    if dist.is_initialized():
        dist.destroy_process_group()
    g = dist.init_process_group("local", devices=["cuda:0"] * 4)
    yield g
    dist.destroy_process_group()


@pytest.mark.parametrize("algorithm", ["ring", "native"])
def test_local_ring_on_one_gpu(local_gpu, algorithm, monkeypatch):
    from vibetensor.collectives import ring
    monkeypatch.setattr(ring, "SEGMENT_BYTES", 4096)  # several pipelined segments per chunk
    for dtype in GPU_DTYPES:
        for op in ops_for(dtype):
            for n in [0, 1, 13, 1009, 50001]:
                arrs = [inp(r, n, dtype, op) for r in range(4)]
                ts = [vt.tensor(a, device="cuda:0") for a in arrs]
                dist.all_reduce(ts, op=op, algorithm=algorithm)
                for t in ts:
                    assert t.device.type == "cuda"
                    check(t.cpu().numpy(), ref(arrs, op), dtype, f"{algorithm} {dtype} {op} n={n}")


def test_local_gpu_other_collectives(local_gpu):
    arrs = [inp(r, 10, "float32", "sum") for r in range(4)]
    ts = [vt.tensor(a, device="cuda:0") for a in arrs]
    outs = [vt.zeros(40, device="cuda:0") for _ in range(4)]
    dist.all_gather_into_tensor(outs, ts)
    for o in outs:
        check(o.cpu().numpy(), np.concatenate(arrs), "float32")
    rs = [vt.zeros(10, device="cuda:0") for _ in range(4)]
    big = [vt.tensor(np.concatenate(arrs) * (r + 1), device="cuda:0") for r in range(4)]
    dist.reduce_scatter_tensor(rs, big)
    for r, o in enumerate(rs):
        check(o.cpu().numpy(), arrs[r] * 10, "float32")
    dist.broadcast(ts, src=3)
    for t in ts:
        check(t.cpu().numpy(), arrs[3], "float32")


def test_nccl_world_size_one():
    if dist.is_initialized():
        dist.destroy_process_group()
    g = dist.init_process_group("nccl")
    try:
        assert g.size() == 1
        for dtype in ["float16", "float32", "float64", "int32", "int64", "uint8"]:
            for op in ops_for(dtype):
                a = inp(0, 1001, dtype, op)
                t = vt.tensor(a, device="cuda:0")
                for algorithm in ("native", "ring"):
                    dist.all_reduce(t, op=op, algorithm=algorithm)
                    check(t.cpu().numpy(), a, dtype, f"nccl {dtype} {op} {algorithm}")
        t = vt.arange(6, dtype=vt.float32, device="cuda:0")
        out = vt.zeros(6, device="cuda:0")
        dist.all_gather_into_tensor(out, t)
        check(out.cpu().numpy(), np.arange(6), "float32")
        dist.broadcast(t, src=0)
        dist.reduce(t, dst=0)
        dist.barrier()
        w = dist.all_reduce(t, async_op=True)
        w.wait(timeout=30)
        check(t.cpu().numpy(), np.arange(6), "float32")
        cpu = vt.ones(3)  # CPU tensors in an nccl group travel over MPI
        dist.all_reduce(cpu)
        check(cpu.numpy(), np.ones(3), "float32")
    finally:
        dist.destroy_process_group()


def test_ddp_local_on_gpu(local_gpu):
    import vibetensor.nn as nn
    import vibetensor.nn.functional as F
    from vibetensor.nn.parallel import DistributedDataParallel as DDP
    vt.manual_seed(0)
    ref_m = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)).to("cuda:0")
    model = copy.deepcopy(ref_m)
    ddp = DDP(model, bucket_cap_mb=0.0001)
    x = vt.randn(8, 4, device="cuda:0")
    y = vt.randn(8, 2, device="cuda:0")
    F.mse_loss(ref_m(x), y).backward()
    F.mse_loss(ddp(x), y).backward()
    for a, b in zip(ref_m.parameters(), model.parameters()):
        np.testing.assert_allclose(a.grad.cpu().numpy(), b.grad.cpu().numpy(), rtol=1e-4, atol=1e-6)
