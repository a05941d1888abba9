"""Collectives over MPI (run by tests/test_mpi_suite.py under mpiexec -n 2 and -n 4), against numpy."""
import numpy as np
import pytest

import vibetensor as vt
from tests.collectives._ref import DTYPES, SIZES, check, inp, ops_for, ref

dist = vt.collectives
pytestmark = pytest.mark.mpi


def _mine(g, n, dtype, op, seed=0):
    arrs = [inp(r, n, dtype, op, seed) for r in range(g.size())]
    return arrs, vt.tensor(arrs[g.rank()])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("algorithm", ["ring", "native", "auto"])
def test_all_reduce(world, dtype, algorithm):
    for op in ops_for(dtype):
        for n in SIZES:
            arrs, t = _mine(world, n, dtype, op)
            assert dist.all_reduce(t, op=op, algorithm=algorithm) is None
            check(t.numpy(), ref(arrs, op), dtype, f"{algorithm} {op} n={n}")
            assert t.dtype.name == dtype


@pytest.mark.parametrize("use_shm", [True, False])
def test_ring_equals_native(world, monkeypatch, use_shm):
    from vibetensor.collectives import group as group_mod, ring
    monkeypatch.setattr(group_mod, "USE_SHM", use_shm)  # shared-memory slots, or MPI point-to-point
    for seg in (None, 256):  # default segments, and many pipelined segments
        if seg:
            monkeypatch.setattr(ring, "SEGMENT_BYTES", seg)
        for dtype in ("int64", "float64", "float32"):
            arrs, a = _mine(world, 5003, dtype, "sum", seed=5)
            b = vt.tensor(arrs[world.rank()])
            dist.all_reduce(a, algorithm="ring")
            dist.all_reduce(b, algorithm="native")
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)
            check(a.numpy(), ref(arrs, "sum"), dtype)


@pytest.mark.parametrize("cma,push_min", [(True, 0), (True, 65), (False, 0)])
def test_shm_ring_protocols(world, monkeypatch, cma, push_min):
    """The shm transport's protocols on a fresh group: all-gather messages pushed with
    process_vm_writev (every one, or -- push_min=65 with 64-byte segments -- only the segments one
    element longer than the others, so one call mixes both kinds) or all through slots. Every dtype
    and op, odd sizes, tiny segments (many in flight, sends that wait for a free slot or a push
    request), one plan reused across calls."""
    from vibetensor.collectives import ring
    from vibetensor.collectives.transport import shm
    monkeypatch.setattr(shm, "USE_CMA", cma)
    monkeypatch.setattr(shm, "PUSH_MIN_BYTES", push_min)
    g = dist.new_group(list(range(world.size())))
    for seg in (None, 64):
        if seg:
            monkeypatch.setattr(ring, "SEGMENT_BYTES", seg)
        for dtype in DTYPES:
            for op in ops_for(dtype):
                for n in (1, 7, 1009, 4099):
                    for rep in range(2):
                        arrs, t = _mine(g, n, dtype, op, seed=rep)
                        dist.all_reduce(t, op=op, group=g, algorithm="ring")
                        check(t.numpy(), ref(arrs, op), dtype, f"shm cma={cma} seg={seg} {op} n={n}")
    tr = g._shm
    assert tr is not None and tr.name == "shm"
    if not cma:
        assert not tr.push  # with cma the push path depends on the kernel letting ranks write to each other
    assert not tr.backlog and not tr.requested
    g.destroy()


def test_non_contiguous_view(world):
    base = vt.tensor(np.arange(12, dtype=np.float64).reshape(3, 4) + world.rank())
    dist.all_reduce(base.t())
    n = world.size()
    check(base.numpy(), n * np.arange(12).reshape(3, 4) + sum(range(n)), "float64")


@pytest.mark.parametrize("dtype", DTYPES)
def test_broadcast_reduce(world, dtype):
    n = world.size()
    for size in SIZES:
        for root in range(n):
            arrs, t = _mine(world, size, dtype, "sum", seed=root)
            dist.broadcast(t, src=root)
            check(t.numpy(), arrs[root], dtype, f"broadcast root {root}")
            arrs, t = _mine(world, size, dtype, "sum", seed=root)
            dist.reduce(t, dst=root, op="max")
            if world.rank() == root:
                check(t.numpy(), ref(arrs, "max"), dtype, f"reduce root {root}")
            else:
                check(t.numpy(), arrs[world.rank()], dtype, "reduce leaves non-root tensors alone")


@pytest.mark.parametrize("dtype", DTYPES)
def test_all_gather_and_reduce_scatter(world, dtype):
    n, r = world.size(), world.rank()
    for size in [0, 1, 3, 11]:
        arrs, t = _mine(world, size, dtype, "sum")
        out = vt.zeros((n * size,), dtype=t.dtype)
        dist.all_gather_into_tensor(out, t)
        check(out.numpy(), np.concatenate(arrs), dtype, "all_gather_into_tensor")
        lst = [vt.zeros((size,), dtype=t.dtype) for _ in range(n)]
        dist.all_gather(lst, t)
        for k, o in enumerate(lst):
            check(o.numpy(), arrs[k], dtype, "all_gather list")
        for op in ops_for(dtype):
            big = [inp(q, n * size, dtype, op, seed=9) for q in range(n)]
            bt = vt.tensor(big[r])
            o = vt.zeros((size,), dtype=t.dtype)
            dist.reduce_scatter_tensor(o, bt, op=op)
            check(o.numpy(), ref(big, op)[r * size:(r + 1) * size], dtype, f"reduce_scatter_tensor {op}")
            check(bt.numpy(), big[r], dtype, "reduce_scatter leaves its input alone")
            o2 = vt.zeros((size,), dtype=t.dtype)
            dist.reduce_scatter(o2, [vt.tensor(big[r][k * size:(k + 1) * size]) for k in range(n)], op=op)
            check(o2.numpy(), o.numpy(), dtype, f"reduce_scatter list {op}")


def test_async_handles(world):
    n = world.size()
    ts = [vt.full((1000 + i,), float(world.rank() + i)) for i in range(5)]
    works = [dist.all_reduce(t, async_op=True, algorithm="ring" if i % 2 else "native") for i, t in enumerate(ts)]
    b = vt.full((3,), float(world.rank()))
    wb = dist.broadcast(b, src=n - 1, async_op=True)
    for w in works:
        assert w.wait(timeout=30) is True
        assert w.is_completed() and w.is_success()
    wb.wait()
    for i, t in enumerate(ts):
        np.testing.assert_allclose(t.numpy(), sum(q + i for q in range(n)))
    np.testing.assert_allclose(b.numpy(), n - 1)
    # a synchronous call after async ones runs after them (issue order)
    x = vt.ones(7)
    w = dist.all_reduce(x, async_op=True)
    dist.all_reduce(x)
    assert w.is_completed()
    np.testing.assert_allclose(x.numpy(), n * n)
    dist.barrier()


def test_sub_groups(world):
    n, r = world.size(), world.rank()
    evens = [q for q in range(n) if q % 2 == 0]
    g = dist.new_group(evens)
    h = dist.new_group([n - 1])
    if r in evens:
        assert dist.get_world_size(g) == len(evens) and dist.get_rank(g) == evens.index(r)
        t = vt.full((9,), float(r))
        dist.all_reduce(t, group=g, algorithm="ring")
        np.testing.assert_allclose(t.numpy(), sum(evens))
        b = vt.full((2,), float(r))
        dist.broadcast(b, src=evens[-1], group=g)  # src is a global rank, as in PyTorch
        np.testing.assert_allclose(b.numpy(), evens[-1])
    else:
        assert g is dist.NON_GROUP_MEMBER and dist.get_rank(g) == -1
        with pytest.raises(dist.CollectiveError, match="not a member"):
            dist.all_reduce(vt.ones(2), group=g)
    if r == n - 1:
        t = vt.ones(3)
        dist.all_reduce(t, group=h)
        np.testing.assert_allclose(t.numpy(), 1.0)
    dist.barrier()


def test_send_recv_and_batch(world):
    n, r = world.size(), world.rank()
    nxt, prv = (r + 1) % n, (r - 1) % n
    for dtype in ("float32", "int64", "bfloat16", "bool"):
        src = vt.tensor(inp(r, 17, dtype, "sum"))
        dst = vt.zeros((17,), dtype=src.dtype)
        works = dist.batch_isend_irecv([dist.P2POp(dist.isend, src, nxt), dist.P2POp(dist.irecv, dst, prv)])
        for w in works:
            w.wait()
        check(dst.numpy(), inp(prv, 17, dtype, "sum"), dtype, "batch_isend_irecv")
    if n >= 2:
        if r == 0:
            dist.send(vt.arange(6, dtype=vt.float64), dst=1, tag=3)
            w = dist.isend(vt.full((2,), 5.0), dst=1)
            w.wait()
        elif r == 1:
            x = vt.zeros(6, dtype=vt.float64)
            assert dist.recv(x, src=0, tag=3) == 0
            np.testing.assert_allclose(x.numpy(), np.arange(6))
            y = vt.zeros(2)
            assert dist.recv(y) == 0  # any source
            np.testing.assert_allclose(y.numpy(), 5.0)
    dist.barrier()


def test_wrong_device_and_errors(world):
    with pytest.raises(dist.CollectiveError, match="already initialised"):
        dist.init_process_group("mpi")
    with pytest.raises(ValueError, match="unknown reduce op"):
        dist.all_reduce(vt.ones(2), op="xor")
    with pytest.raises(TypeError, match="one Tensor"):
        dist.all_reduce([vt.ones(2), vt.ones(2)])
    with pytest.raises(ValueError, match="not a member"):
        dist.broadcast(vt.ones(2), src=world.size() + 3)
    if not vt.core.backend.cuda_available():
        with pytest.raises(vt.DeviceUnavailableError):
            dist.all_reduce(vt.ones(2, device="cuda:0"))
    dist.barrier()


def test_object_collectives(world):
    n, r = world.size(), world.rank()
    got = [None] * n
    dist.all_gather_object(got, {"rank": r, "pad": "x" * (r * 37)})
    assert got == [{"rank": q, "pad": "x" * (q * 37)} for q in range(n)]
    objs = [r, "from", (r,)] if r == n - 1 else [None, None, None]
    dist.broadcast_object_list(objs, src=n - 1)
    assert objs == [n - 1, "from", (n - 1,)]
