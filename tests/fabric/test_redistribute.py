"""distribute / redistribute between every pair of placements, uneven shards, to_local / from_local,
autograd through redistribute, and bad input."""
import itertools

import numpy as np
import pytest

import vibetensor as vt
from vibetensor import observe
from vibetensor.fabric import (DeviceMesh, DTensor, Partial, Replicate, Shard, distribute_tensor, from_local,
                               init_device_mesh)

PLACEMENTS_1D = [Shard(0), Shard(1), Replicate(), Partial("sum"), Partial("avg"), Partial("max"), Partial("min")]


def _arr(shape):
    return np.random.randn(*shape)


@pytest.mark.parametrize("shape", [(7, 5), (8, 4), (3, 2)])   # uneven, even, fewer rows than devices
def test_every_pair_1d(cpu_devices, shape):
    mesh = init_device_mesh("cpu", (4,))
    a = _arr(shape)
    x = vt.tensor(a, dtype=vt.float64)
    for src, dst in itertools.product(PLACEMENTS_1D, PLACEMENTS_1D):
        d = distribute_tensor(x, mesh, [src])
        r = d.redistribute(mesh, [dst])
        assert r.placements == (dst,)
        assert tuple(r.shape) == shape
        np.testing.assert_allclose(r.full_tensor().numpy(), a, err_msg=f"{src} -> {dst}")
        if isinstance(dst, Shard):  # torch.chunk layout
            sizes = [t.shape[dst.dim] for t in r.to_local()]
            n = shape[dst.dim]
            c = -(-n // 4)
            assert sizes == [max(0, min(c, n - i * c)) for i in range(4)]
        if isinstance(dst, Replicate):
            for t in r.to_local():
                np.testing.assert_allclose(t.numpy(), a)


def test_every_pair_2d_mesh(cpu_devices):
    mesh = init_device_mesh("cpu", (2, 2), mesh_dim_names=("dp", "tp"))
    a = _arr((5, 6))
    x = vt.tensor(a, dtype=vt.float64)
    opts = [Shard(0), Shard(1), Replicate(), Partial("sum")]
    pls = list(itertools.product(opts, opts))
    for src in pls:
        d = distribute_tensor(x, mesh, list(src))
        np.testing.assert_allclose(d.full_tensor().numpy(), a, err_msg=str(src))
        for dst in pls[::3]:
            r = d.redistribute(mesh, list(dst))
            np.testing.assert_allclose(r.full_tensor().numpy(), a, err_msg=f"{src} -> {dst}")


def test_nested_shard_same_dim(cpu_devices):
    mesh = init_device_mesh("cpu", (2, 2))
    a = _arr((9, 2))
    d = distribute_tensor(vt.tensor(a, dtype=vt.float64), mesh, [Shard(0), Shard(0)])
    assert [t.shape[0] for t in d.to_local()] == [3, 2, 2, 2]
    np.testing.assert_allclose(d.full_tensor().numpy(), a)
    np.testing.assert_allclose(d.redistribute(mesh, [Shard(1), Replicate()]).full_tensor().numpy(), a)


def test_copies_are_recorded(cpu_devices):
    mesh = init_device_mesh("cpu", (4,))
    x = vt.tensor(_arr((8, 4)), dtype=vt.float32)
    d = distribute_tensor(x, mesh, [Shard(0)])
    seq = observe.latest_seq() + 1
    d.redistribute(mesh, [Replicate()])
    ev = [e for e in observe.events(seq) if e.kind is observe.EventKind.FABRIC_COPY]
    assert ev and all(e.nbytes > 0 for e in ev)
    assert sum(e.nbytes for e in ev) >= 3 * 2 * 4 * 4  # at least the three remote shards moved


def test_local_only_replicate_to_shard_moves_nothing(cpu_devices):
    mesh = init_device_mesh("cpu", (4,))
    d = distribute_tensor(vt.tensor(_arr((8, 3)), dtype=vt.float64), mesh, [Replicate()])
    before = vt.fabric.stats().copies
    s = d.redistribute(mesh, [Shard(0)])
    assert vt.fabric.stats().copies == before
    assert [t.shape[0] for t in s.to_local()] == [2, 2, 2, 2]


def test_dtensor_metadata(cpu_devices):
    mesh = init_device_mesh("cpu", (4,))
    d = distribute_tensor(vt.randn(6, 3), mesh, [Shard(0)])
    assert isinstance(d, DTensor) and d.is_sharded
    assert tuple(d.shape) == (6, 3) and d.ndim == 2 and d.numel() == 18 and d.dtype is vt.float32
    assert d.device == vt.device("cpu") and d.size(0) == 6 and len(d) == 6
    assert "DTensor(shape=(6, 3)" in repr(d) and "Shard(dim=0)" in repr(d)
    assert d.to_local(device="cpu:1").device == vt.device("cpu:1")
    assert d.to_local()[1].device == vt.device("cpu:1")


def test_from_local_round_trip_and_grad(cpu_devices):
    mesh = init_device_mesh("cpu", (4,))
    parts = [vt.randn(2, 3, dtype=vt.float64, device=f"cpu:{i}").requires_grad_(True) for i in range(4)]
    d = from_local(parts, mesh, [Shard(0)])
    assert tuple(d.shape) == (8, 3)
    (d * 3).sum().backward()
    for p in parts:
        np.testing.assert_allclose(p.grad.numpy(), np.full((2, 3), 3.0))
    with pytest.raises(ValueError, match="torch.chunk layout"):
        from_local([vt.randn(2, device=f"cpu:{i}") for i in [0, 1, 2]] + [vt.randn(3, device="cpu:3")],
                   mesh, [Shard(0)])


def test_grad_through_redistribute_and_full_tensor(cpu_devices):
    mesh = init_device_mesh("cpu", (4,))
    a = _arr((5, 3))
    w = np.random.randn(5, 3)
    x = vt.tensor(a, dtype=vt.float64, requires_grad=True)
    d = distribute_tensor(x * 1.0, mesh, [Shard(0)])       # non-leaf: distribute is differentiable
    r = d.redistribute(mesh, [Shard(1)]).redistribute(mesh, [Replicate()])
    loss = (r.full_tensor() * vt.tensor(w, dtype=vt.float64, device="cpu:0")).sum()
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), w)


def test_leaf_parameter_grad_keeps_placement(cpu_devices):
    mesh = init_device_mesh("cpu", (4,))
    p = distribute_tensor(vt.randn(8, 2, dtype=vt.float64, requires_grad=True), mesh, [Shard(0)])
    assert p.is_leaf and p.requires_grad
    (p * p).sum().backward()
    assert p.grad.placements == (Shard(0),)
    np.testing.assert_allclose(p.grad.full_tensor().numpy(), 2 * p.detach().full_tensor().numpy())


def test_bad_input(cpu_devices):
    mesh = init_device_mesh("cpu", (4,))
    x = vt.randn(4, 3)
    with pytest.raises(IndexError, match=r"Shard\(dim=2\) is out of range for a 2-d tensor"):
        distribute_tensor(x, mesh, [Shard(2)])
    with pytest.raises(IndexError, match="0-d"):
        distribute_tensor(vt.tensor(1.0), mesh, [Shard(0)])
    with pytest.raises(ValueError, match="2 placements"):
        distribute_tensor(x, mesh, [Shard(0), Shard(1)])
    with pytest.raises(ValueError, match="reduce_op"):
        Partial("prod")
    with pytest.raises(TypeError, match="not a placement"):
        distribute_tensor(x, mesh, ["shard"])
    d = distribute_tensor(x, mesh, [Shard(0)])
    with pytest.raises(TypeError, match="already a DTensor"):
        distribute_tensor(d, mesh, [Shard(0)])
    other = DeviceMesh(["cpu:0", "cpu:1"])
    e = distribute_tensor(vt.randn(4, 3), other, [Shard(0)])
    with pytest.raises(ValueError, match="different meshes"):
        d + e
    with pytest.raises(NotImplementedError, match="another mesh"):
        d.redistribute(other, [Replicate()])
    with pytest.raises(NotImplementedError, match="moving a sharded tensor"):
        d.to("cpu:1")
    with pytest.raises(NotImplementedError, match="collectives"):  # no process group initialised
        DeviceMesh(["cpu:0", "cpu:1"], process_ranks=[0, 1])


@pytest.mark.parametrize("dtype", [vt.float32, vt.float16, vt.bfloat16, vt.int32, vt.int64, vt.uint8, vt.bool])
def test_dtypes_round_trip_and_ops(cpu_devices, dtype):
    mesh = init_device_mesh("cpu", (4,))
    a = (np.random.randn(7, 3) * 4)
    x = vt.tensor(a).to(dtype)
    ref = x.numpy() if dtype not in (vt.bfloat16,) else x.float().numpy()
    for pl in (Shard(0), Shard(1), Replicate()):
        d = distribute_tensor(x, mesh, [pl])
        assert d.dtype is dtype
        got = d.full_tensor()
        np.testing.assert_array_equal(got.numpy() if dtype is not vt.bfloat16 else got.float().numpy(), ref)
        if dtype is not vt.bool:   # partial sums add in another order: float tolerance of the dtype
            s = (d + d).sum(0).full_tensor().to(vt.float64).numpy()
            want = (x + x).sum(0).to(vt.float64).numpy()
            tol = {vt.float32: 1e-6, vt.float16: 2e-3, vt.bfloat16: 2e-2}.get(dtype, 0)
            np.testing.assert_allclose(s, want, rtol=tol, atol=tol)


def test_empty_and_noncontiguous(cpu_devices):
    mesh = init_device_mesh("cpu", (4,))
    e = distribute_tensor(vt.zeros(0, 3), mesh, [Shard(0)])
    assert tuple(e.shape) == (0, 3) and [tuple(t.shape) for t in e.to_local()] == [(0, 3)] * 4
    assert tuple((e * 2).sum(1).full_tensor().shape) == (0,)
    assert float(e.sum()) == 0.0
    a = np.random.randn(5, 6)
    nc = vt.tensor(a, dtype=vt.float64).t()        # a transposed view
    d = distribute_tensor(nc, mesh, [Shard(1)])
    np.testing.assert_allclose(d.full_tensor().numpy(), a.T)
    np.testing.assert_allclose((d * 1.5).redistribute(mesh, [Shard(0)]).full_tensor().numpy(), 1.5 * a.T)


def test_like_factories_keep_layout(cpu_devices):
    mesh = init_device_mesh("cpu", (2, 2))
    d = distribute_tensor(vt.randn(5, 4), mesh, [Shard(0), Partial("sum")])
    z = vt.zeros_like(d)
    o = vt.ones_like(d)
    r = vt.randn_like(d)
    assert isinstance(z, DTensor) and z.placements == (Shard(0), Replicate())
    np.testing.assert_array_equal(o.full_tensor().numpy(), np.ones((5, 4), np.float32))
    np.testing.assert_array_equal(z.full_tensor().numpy(), np.zeros((5, 4), np.float32))
    rl = r.to_local()
    np.testing.assert_array_equal(rl[0].numpy(), rl[1].to("cpu:0").numpy())   # replicas agree
    assert vt.full_like(d, 3.0).full_tensor().numpy().max() == 3.0
