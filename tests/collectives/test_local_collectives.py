"""The ``local`` transport on four virtual CPU devices (one process, one rank per device), against numpy."""
import numpy as np
import pytest

import vibetensor as vt
from tests.collectives._ref import DTYPES, SIZES, check, inp, ops_for, ref

dist = vt.collectives
N = 4


def _ts(g, n, dtype, op, seed=0, shape=None):
    arrs = [inp(r, n, dtype, op, seed) for r in range(N)]
    ts = [vt.tensor(a.reshape(shape) if shape else a, device=f"cpu:{r}") for r, a in enumerate(arrs)]
    return arrs, ts


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("algorithm", ["ring", "native"])
def test_all_reduce_every_op_and_size(local_devices, dtype, algorithm):
    g = local_devices
    for op in ops_for(dtype):
        for n in SIZES:
            arrs, ts = _ts(g, n, dtype, op)
            dist.all_reduce(ts, op=op, algorithm=algorithm)
            want = ref(arrs, op)
            for r, t in enumerate(ts):
                assert t.dtype.name == dtype and t.device == vt.device(f"cpu:{r}")
                check(t.numpy(), want, dtype, f"{algorithm} {op} n={n} rank {r}")


def test_ring_equals_native_bitwise_on_integers_and_close_on_floats(local_devices):
    for dtype in ["int64", "float32"]:
        arrs, a = _ts(local_devices, 1013, dtype, "sum", seed=3)
        _, b = _ts(local_devices, 1013, dtype, "sum", seed=3)
        dist.all_reduce(a, algorithm="ring")
        dist.all_reduce(b, algorithm="native")
        for x, y in zip(a, b):
            np.testing.assert_allclose(x.numpy(), y.numpy(), rtol=1e-6)


def test_ring_pipelined_segments(local_devices, monkeypatch):
    from vibetensor.collectives import ring
    monkeypatch.setattr(ring, "SEGMENT_BYTES", 64)  # many segments per chunk, window of 4
    arrs, ts = _ts(local_devices, 1001, "float64", "sum")
    dist.all_reduce(ts, algorithm="ring")
    for t in ts:
        check(t.numpy(), ref(arrs, "sum"), "float64")
    arrs, ts = _ts(local_devices, 1001, "float32", "avg")
    dist.all_reduce(ts, op=dist.ReduceOp.AVG, algorithm="ring")
    for t in ts:
        check(t.numpy(), ref(arrs, "avg"), "float32")


def test_non_contiguous_and_2d(local_devices):
    arrs = [np.arange(24, dtype=np.float32).reshape(4, 6) * (r + 1) for r in range(N)]
    base = [vt.tensor(a, device=f"cpu:{r}") for r, a in enumerate(arrs)]
    views = [b.t() for b in base]  # transposed views: written back through the view
    dist.all_reduce(views)
    for b in base:
        check(b.numpy(), sum(arrs), "float32")


@pytest.mark.parametrize("dtype", ["float32", "int64", "bfloat16", "bool"])
def test_broadcast_all_gather_reduce_scatter_reduce(local_devices, dtype):
    for n in [0, 1, 7, 12]:
        arrs, ts = _ts(local_devices, n, dtype, "sum")
        dist.broadcast(ts, src=2)
        for t in ts:
            check(t.numpy(), arrs[2], dtype, "broadcast")
        arrs, ts = _ts(local_devices, n, dtype, "sum")
        outs = [vt.zeros((N * n,), dtype=getattr(vt, dtype if dtype != "bool" else "bool"), device=f"cpu:{r}")
                for r in range(N)]
        dist.all_gather_into_tensor(outs, ts)
        for o in outs:
            check(o.numpy(), np.concatenate(arrs), dtype, "all_gather_into_tensor")
        lists = [[vt.zeros((n,), dtype=ts[0].dtype, device=f"cpu:{r}") for _ in range(N)] for r in range(N)]
        dist.all_gather(lists, ts)
        for lst in lists:
            for k, o in enumerate(lst):
                check(o.numpy(), arrs[k], dtype, "all_gather")
        big = [inp(r, N * n, dtype, "max") for r in range(N)]
        bt = [vt.tensor(b, device=f"cpu:{r}") for r, b in enumerate(big)]
        outs = [vt.zeros((n,), dtype=ts[0].dtype, device=f"cpu:{r}") for r in range(N)]
        dist.reduce_scatter_tensor(outs, bt, op="max")
        full = ref(big, "max")
        for r, o in enumerate(outs):
            check(o.numpy(), full[r * n:(r + 1) * n], dtype, "reduce_scatter_tensor")
        for r in range(N):  # inputs untouched
            check(bt[r].numpy(), big[r], dtype, "reduce_scatter input")
        arrs, ts = _ts(local_devices, n, dtype, "sum")
        dist.reduce(ts, dst=1)
        check(ts[1].numpy(), ref(arrs, "sum"), dtype, "reduce")


def test_reduce_scatter_list_and_async(local_devices):
    ins = [[vt.full((3,), float(r * 10 + k), device=f"cpu:{r}") for k in range(N)] for r in range(N)]
    outs = [vt.zeros((3,), device=f"cpu:{r}") for r in range(N)]
    w = dist.reduce_scatter(outs, ins, async_op=True)
    assert w.wait(timeout=10) is True and w.is_completed()
    for r, o in enumerate(outs):
        np.testing.assert_allclose(o.numpy(), sum(q * 10 + r for q in range(N)))


def test_new_group_subset(local_devices):
    g = dist.new_group([1, 3])
    assert g.size() == 2
    ts = [vt.full((5,), 2.0, device="cpu:1"), vt.full((5,), 5.0, device="cpu:3")]
    dist.all_reduce(ts, group=g, algorithm="ring")
    for t in ts:
        np.testing.assert_allclose(t.numpy(), 7.0)
    with pytest.raises(vt.DeviceMismatchError, match="cpu:0"):
        dist.all_reduce([vt.ones(2, device="cpu:0"), vt.ones(2, device="cpu:3")], group=g)


def test_errors(local_devices):
    ts = [vt.ones(3, device=f"cpu:{r}") for r in range(N)]
    with pytest.raises(dist.CollectiveError, match="already initialised"):
        dist.init_process_group("local")
    with pytest.raises(ValueError, match="unknown reduce op"):
        dist.all_reduce(ts, op="median")
    with pytest.raises(ValueError, match="unknown algorithm"):
        dist.all_reduce(ts, algorithm="tree")
    with pytest.raises(TypeError, match="list of 4 tensors"):
        dist.all_reduce(ts[0])
    with pytest.raises(vt.DeviceMismatchError, match="cpu:2"):
        dist.all_reduce([ts[0], ts[1], ts[3], ts[2]])
    with pytest.raises(vt.DTypeError, match="AVG needs a floating-point"):
        dist.all_reduce([vt.ones(3, dtype=vt.int64, device=f"cpu:{r}") for r in range(N)], op="avg")
    with pytest.raises(vt.DTypeError, match="int8 is not supported"):
        dist.all_reduce([vt.ones(3, dtype=vt.int8, device=f"cpu:{r}") for r in range(N)])
    with pytest.raises(vt.ShapeError, match="local tensor 1"):
        dist.all_reduce([vt.ones(3 if r != 1 else 4, device=f"cpu:{r}") for r in range(N)])
    with pytest.raises(ValueError, match="outside group"):
        dist.broadcast(ts, src=9)
    with pytest.raises(ValueError, match="world_size \\* input"):
        dist.all_gather_into_tensor([vt.zeros(5, device=f"cpu:{r}") for r in range(N)], ts)


def test_not_initialised_and_unknown_backend():
    if dist.is_initialized():
        dist.destroy_process_group()
    with pytest.raises(dist.CollectiveError, match="not initialised"):
        dist.all_reduce(vt.ones(2))
    with pytest.raises(dist.CollectiveError, match="not initialised"):
        dist.get_rank()
    with pytest.raises(ValueError, match="unknown backend 'gloo'"):
        dist.init_process_group("gloo")
    assert vt.distributed is vt.collectives


def test_world_of_one_device_and_timeout_flag(monkeypatch):
    from vibetensor import _env
    if dist.is_initialized():
        dist.destroy_process_group()
    monkeypatch.setenv("VT_COLLECTIVE_TIMEOUT", "7.5")
    _env.reload()
    try:
        g = dist.init_process_group("local")
        assert g.size() == 1 and dist.get_rank() == 0 and g.timeout() == 7.5 and g.timeout(2) == 2.0
        t = vt.arange(5, dtype=vt.float32)
        dist.all_reduce(t, op="avg")
        np.testing.assert_allclose(t.numpy(), np.arange(5))
        v0 = t._version
        dist.broadcast(t, src=0)
        dist.barrier()
        assert t._version == v0  # the root's tensor is not rewritten
    finally:
        dist.destroy_process_group()
        monkeypatch.delenv("VT_COLLECTIVE_TIMEOUT")
        _env.reload()


def test_events_recorded(local_devices):
    from vibetensor import observe
    observe.set_mode("basic")
    start = observe.latest_seq() + 1
    dist.all_reduce([vt.ones(4, device=f"cpu:{r}") for r in range(N)])
    kinds = [e.kind.value for e in observe.events(start) if e.name == "all_reduce"]
    assert kinds == ["collective_enqueue", "collective_start", "collective_complete"]
    ev = [e for e in observe.events(start) if e.name == "all_reduce"][-1]
    assert ev.group == "world" and ev.coll_seq >= 1 and ev.nbytes == 4 * 16 and ev.dtype == "float32"


@pytest.mark.parametrize("order", [[2, 0, 3, 1], [3, 2, 1, 0]])
def test_ring_with_permuted_order(local_devices, order, monkeypatch):
    """Fabric may order the ring along NVLink: every phase must still land chunk r on rank r."""
    from vibetensor.collectives import ring
    tr = local_devices._host
    monkeypatch.setattr(ring, "SEGMENT_BYTES", 48)  # several segments per chunk
    for n in [1, 5, 103]:
        arrs = [inp(r, n, "float64", "sum") for r in range(N)]
        bufs = [a.copy() for a in arrs]
        ring.ring_allreduce(tr, bufs, dist.ReduceOp.SUM, lambda h: h.test(), order=order)
        for b in bufs:
            check(b, ref(arrs, "sum"), "float64", f"allreduce order {order} n={n}")
        big = [inp(r, N * n, "float64", "max") for r in range(N)]
        bufs = [b.copy() for b in big]
        ring.ring(tr, bufs, dist.ReduceOp.MAX, lambda h: h.test(), ("rs",), order)
        full = ref(big, "max")
        for r in range(N):
            check(bufs[r][r * n:(r + 1) * n], full[r * n:(r + 1) * n], "float64", f"reduce-scatter order {order}")
        bufs = [np.zeros(N * n) for _ in range(N)]
        for r in range(N):
            bufs[r][r * n:(r + 1) * n] = arrs[r]
        ring.ring(tr, bufs, dist.ReduceOp.SUM, lambda h: h.test(), ("ag",), order)
        for b in bufs:
            check(b, np.concatenate(arrs), "float64", f"all-gather order {order}")
