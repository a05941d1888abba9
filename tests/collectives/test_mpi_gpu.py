"""Multi-process GPU collectives (mpiexec -n 2 / -n 4 on a GPU machine; ranks may share one GPU):
the ipc transport with our ring, the mpi transport on CUDA tensors (staged unless CUDA-aware), NCCL
when every rank has its own GPU."""
import numpy as np
import pytest

import vibetensor as vt
from tests.collectives._ref import check, inp, ops_for, ref

dist = vt.collectives
pytestmark = [pytest.mark.mpi, pytest.mark.gpu]
GPU_DTYPES = ["float16", "float32", "float64", "int32", "int64", "uint8", "bool"]


def _dev(world):
    n = vt.core.backend.cuda_device_count()
    return f"cuda:{world.rank() % n}"


@pytest.fixture(scope="module")
def ipc_group(world):
    return dist.new_group(list(range(world.size())), backend="ipc")


def test_ipc_all_reduce_matches_numpy(world, ipc_group, monkeypatch):
    from vibetensor.collectives import ring
    dev = _dev(world)
    for dtype in GPU_DTYPES:
        for op in ops_for(dtype):
            for n in [0, 1, 13, 1009, 300007]:  # the largest spans several 1 MiB slots
                arrs = [inp(r, n, dtype, op) for r in range(world.size())]
                t = vt.tensor(arrs[world.rank()], device=dev)
                dist.all_reduce(t, op=op, group=ipc_group)
                check(t.cpu().numpy(), ref(arrs, op), dtype, f"ipc {dtype} {op} n={n}")
    assert ring.SEGMENT_BYTES > 0


def test_ipc_other_collectives(world, ipc_group):
    dev, n, r = _dev(world), world.size(), world.rank()
    arrs = [inp(q, 1000, "float32", "sum") for q in range(n)]
    t = vt.tensor(arrs[r], device=dev)
    out = vt.zeros(n * 1000, device=dev)
    dist.all_gather_into_tensor(out, t, group=ipc_group)
    check(out.cpu().numpy(), np.concatenate(arrs), "float32", "ipc all_gather")
    big = [inp(q, n * 700001 // n * 1, "float32", "sum") for q in range(n)]
    per = big[0].size // n
    bt = vt.tensor(big[r][:per * n], device=dev)
    o = vt.zeros(per, device=dev)
    dist.reduce_scatter_tensor(o, bt, group=ipc_group)
    check(o.cpu().numpy(), ref([b[:per * n] for b in big], "sum")[r * per:(r + 1) * per], "float32",
          "ipc reduce_scatter")
    for root in range(n):
        b = vt.tensor(inp(r, 500003, "float32", "sum"), device=dev)
        dist.broadcast(b, src=root, group=ipc_group)
        check(b.cpu().numpy(), inp(root, 500003, "float32", "sum"), "float32", f"ipc broadcast root {root}")
    x = vt.tensor(arrs[r], device=dev)
    dist.reduce(x, dst=n - 1, group=ipc_group)
    if r == n - 1:
        check(x.cpu().numpy(), ref(arrs, "sum"), "float32", "ipc reduce")
    dist.barrier()


def test_mpi_transport_on_cuda_tensors(world):
    dev = _dev(world)
    arrs = [inp(q, 4097, "float32", "sum") for q in range(world.size())]
    for algorithm in ("native", "ring"):
        t = vt.tensor(arrs[world.rank()], device=dev)
        dist.all_reduce(t, algorithm=algorithm)  # the world group is mpi: staged through pinned memory
        check(t.cpu().numpy(), ref(arrs, "sum"), "float32", f"mpi on cuda {algorithm}")


def test_nccl_multi_process_when_one_gpu_per_rank(world):
    if vt.core.backend.cuda_device_count() < world.size():
        pytest.skip("NCCL refuses two ranks on one GPU; needs a GPU per rank")
    g = dist.new_group(list(range(world.size())), backend="nccl")
    arrs = [inp(q, 10007, "float32", "sum") for q in range(world.size())]
    for algorithm in ("native", "ring"):
        t = vt.tensor(arrs[world.rank()], device=_dev(world))
        dist.all_reduce(t, group=g, algorithm=algorithm)
        check(t.cpu().numpy(), ref(arrs, "sum"), "float32", f"nccl {algorithm}")
