"""Multi-process meshes (one position per MPI rank): run by tests/test_mpi_suite.py under mpiexec -n 2 / -n 4.

Every rank builds the same global numpy values; results are checked on every rank against them."""
import os

import numpy as np
import pytest

import vibetensor as vt
from vibetensor.fabric import DeviceMesh, Partial, Replicate, Shard, distribute_tensor, init_device_mesh
from vibetensor.fabric.dtensor import from_local
from vibetensor.fabric.layout import local_box

pytestmark = pytest.mark.mpi
dist = vt.collectives


@pytest.fixture(scope="module")
def world():
    if os.environ.get("VT_IN_MPI_SUITE") != "1":
        pytest.skip("MPI tests run under mpiexec via tests/test_mpi_suite.py")
    if not dist.is_initialized():
        dist.init_process_group("mpi", timeout=float(os.environ.get("VT_COLLECTIVE_TIMEOUT", "30")))
    return dist.default_group()


def _meshes(n):
    out = [init_device_mesh("cpu", (n,))]
    if n == 4:
        out.append(DeviceMesh("cpu", [[0, 1], [2, 3]], mesh_dim_names=("dp", "tp")))
        out.append(DeviceMesh("cpu", [[3, 1], [0, 2]]))  # ranks not in mesh order
    return out


PLACEMENTS = [Shard(0), Shard(1), Replicate(), Partial("sum"), Partial("avg"), Partial("max"), Partial("min")]


def _local_ref(full, mesh, pl):
    k = mesh.local_indices()[0]
    offs, sizes = local_box(full.shape, mesh, pl, mesh.coords(k))
    return full[tuple(slice(o, o + s) for o, s in zip(offs, sizes))]


def _pairs(mesh):
    if mesh.ndim == 1:
        return [((p,), (q,)) for p in PLACEMENTS for q in PLACEMENTS]
    few = [Shard(0), Shard(1), Replicate(), Partial("sum"), Partial("max")]
    return [((a, b), (c, d)) for a in few for b in few for c in few for d in few
            if (a, b) != (c, d) and (a == c or b == d or (a, b, c, d).count(Replicate()) >= 1)]


def test_mesh_over_ranks(world):
    n = world.size()
    mesh = init_device_mesh("cpu", (n,))
    assert mesh.is_multi_process and mesh.process_ranks == tuple(range(n))
    assert mesh.local_indices() == [world.rank()]
    assert mesh.devices[0] == vt.device("cpu")
    with pytest.raises(ValueError, match="outside the default process group"):
        DeviceMesh("cpu", list(range(1, n + 1)))
    with pytest.raises(ValueError, match="ranks"):
        init_device_mesh("cpu", (n + 1,))
    if n == 4:
        with pytest.raises(NotImplementedError, match="subset"):
            DeviceMesh("cpu", [0, 1])
    with pytest.raises(NotImplementedError, match="several devices per process"):
        DeviceMesh(["cpu"] * n, process_ranks=[0] * n)
    other = DeviceMesh("cpu", list(reversed(range(n))))
    a = distribute_tensor(vt.ones(n, 3), mesh, [Shard(0)])
    b = distribute_tensor(vt.ones(n, 3), other, [Shard(0)])
    with pytest.raises(ValueError, match="different meshes"):
        a + b
    with pytest.raises(NotImplementedError, match="another mesh"):
        a.redistribute(other, [Replicate()])
    # rank r at position n-1-r holds the last rows of the reversed mesh
    t = vt.tensor(np.arange(n * 3.0).reshape(n, 3))
    np.testing.assert_allclose(distribute_tensor(t, other, [Shard(0)]).to_local().numpy(),
                               t.numpy()[n - 1 - world.rank()][None])
    np.testing.assert_allclose(distribute_tensor(t, other, [Shard(0)]).full_tensor().numpy(), t.numpy())


@pytest.mark.parametrize("shape", [(5, 7), (3, 2)])
def test_redistribute_every_pair(world, shape):
    rng = np.random.default_rng(0)
    full = rng.standard_normal(shape)
    for mesh in _meshes(world.size()):
        for src, dst in _pairs(mesh):
            d = distribute_tensor(vt.tensor(full), mesh, src)
            np.testing.assert_allclose(d.full_tensor().numpy(), full, err_msg=f"{src}")
            r = d.redistribute(mesh, dst)
            assert r.placements == dst and tuple(r.shape) == shape
            np.testing.assert_allclose(r.full_tensor().numpy(), full, rtol=1e-12, err_msg=f"{src}->{dst}")
            if not any(isinstance(p, Partial) for p in dst):
                np.testing.assert_allclose(r.to_local().numpy(), _local_ref(full, mesh, dst), err_msg=f"{src}->{dst}")


def test_partial_from_different_ranks(world):
    n, me = world.size(), world.rank()
    vals = [np.random.default_rng(r).standard_normal((5, 3)) for r in range(n)]
    mesh = init_device_mesh("cpu", (n,))
    ref = {"sum": sum(vals), "avg": sum(vals) / n, "max": np.maximum.reduce(vals), "min": np.minimum.reduce(vals)}
    for op, want in ref.items():
        for dst in (Replicate(), Shard(0), Shard(1)):
            d = from_local(vt.tensor(vals[me]), mesh, [Partial(op)])
            r = d.redistribute(mesh, [dst])
            np.testing.assert_allclose(r.full_tensor().numpy(), want, rtol=1e-12)
            np.testing.assert_allclose(r.to_local().numpy(), _local_ref(want, mesh, (dst,)), rtol=1e-12)


def test_sharded_ops(world):
    rng = np.random.default_rng(1)
    a, b, w = rng.standard_normal((7, 5)), rng.standard_normal((7, 5)), rng.standard_normal((5, 6))
    for mesh in _meshes(world.size()):
        s0 = [Shard(0)] + [Replicate()] * (mesh.ndim - 1)
        s1 = [Shard(1)] + [Replicate()] * (mesh.ndim - 1)
        rep = [Replicate()] * mesh.ndim
        before = vt.fabric.stats().ops_fallback
        da, db = distribute_tensor(vt.tensor(a), mesh, s0), distribute_tensor(vt.tensor(b), mesh, s0)
        out = (da * db + 1.5).exp()
        assert out.placements == tuple(s0)
        np.testing.assert_allclose(out.full_tensor().numpy(), np.exp(a * b + 1.5), rtol=1e-12)
        s = da.sum()
        assert isinstance(s.placements[0], Partial)
        np.testing.assert_allclose(s.full_tensor().numpy(), a.sum(), rtol=1e-12)
        np.testing.assert_allclose(distribute_tensor(vt.tensor(a), mesh, s1).sum(dim=1).full_tensor().numpy(),
                                   a.sum(1), rtol=1e-12)
        dw = distribute_tensor(vt.tensor(w), mesh, s1)      # column parallel
        np.testing.assert_allclose((da @ dw).full_tensor().numpy(), a @ w, rtol=1e-12)
        ra, rw = distribute_tensor(vt.tensor(a), mesh, s1), distribute_tensor(vt.tensor(w), mesh, s0)
        rp = ra @ rw                                         # row parallel: Partial(sum)
        assert isinstance(rp.placements[0], Partial)
        np.testing.assert_allclose(rp.full_tensor().numpy(), a @ w, rtol=1e-12)
        np.testing.assert_allclose(rp.redistribute(mesh, rep).to_local().numpy(), a @ w, rtol=1e-12)
        assert vt.fabric.stats().ops_fallback == before, vt.fabric.stats().fallback_reasons
        # no rule along the sharded dim: replicated fallback, counted
        srt = da.sort(dim=0).values
        assert vt.fabric.stats().ops_fallback > before
        np.testing.assert_allclose(srt.full_tensor().numpy(), np.sort(a, axis=0))


def test_tensor_parallel_mlp(world):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((6, 5)), rng.standard_normal((6, 3))
    w1, b1 = rng.standard_normal((7, 5)), rng.standard_normal(7)   # 7 hidden: uneven on 2 and 4 ranks
    w2, b2 = rng.standard_normal((3, 7)), rng.standard_normal(3)
    tp = [torch.tensor(v, requires_grad=True) for v in (w1, b1, w2, b2)]
    h = torch.nn.functional.gelu(torch.nn.functional.linear(torch.tensor(x), tp[0], tp[1]))
    loss = ((torch.nn.functional.linear(h, tp[2], tp[3]) - torch.tensor(y)) ** 2).mean()
    loss.backward()
    F = vt.nn.functional
    for mesh in _meshes(world.size()):
        lead = [Replicate()] * (mesh.ndim - 1)
        pl = [[Shard(0)], [Shard(0)], [Shard(1)], [Replicate()]]
        ps = [distribute_tensor(vt.tensor(v, requires_grad=True), mesh, lead + p)
              for v, p in zip((w1, b1, w2, b2), pl)]
        xr = distribute_tensor(vt.tensor(x), mesh, lead + [Replicate()])
        yr = distribute_tensor(vt.tensor(y), mesh, lead + [Replicate()])
        hh = F.gelu(F.linear(xr, ps[0], ps[1]))
        assert hh.placements[-1] == Shard(1)
        out = F.linear(hh, ps[2], ps[3])
        assert isinstance(out.placements[-1], Partial)
        vloss = ((out - yr) ** 2).mean()
        np.testing.assert_allclose(vloss.full_tensor().item(), loss.item(), rtol=1e-10)
        vloss.backward()
        for p, t, want in zip(ps, tp, pl):
            assert p.grad.placements == tuple(lead + want)
            np.testing.assert_allclose(p.grad.full_tensor().numpy(), t.grad.numpy(), rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(p.grad.to_local().numpy(),
                                       _local_ref(t.grad.numpy(), mesh, tuple(lead + want)), rtol=1e-9, atol=1e-12)


def test_random_and_inplace_agree_across_ranks(world):
    mesh = init_device_mesh("cpu", (world.size(),))
    d = distribute_tensor(vt.zeros(5, 3), mesh, [Shard(0)])
    vt.manual_seed(world.rank())  # different generators: the values still come from position 0
    with vt.no_grad():
        d.normal_()
    r = vt.rand_like(d)
    assert r.placements == (Shard(0),)
    for t in (d, r):
        full = t.full_tensor().numpy()
        got = [None] * world.size()
        dist.all_gather_object(got, full)
        for g in got:
            np.testing.assert_array_equal(g, full)
        np.testing.assert_array_equal(t.to_local().numpy(), _local_ref(full, mesh, (Shard(0),)))
    with vt.no_grad():
        d.add_(1.0)
        d.fill_(2.0)
    np.testing.assert_array_equal(d.full_tensor().numpy(), np.full((5, 3), 2.0))
