"""A tensor-parallel MLP trained with AdamW on virtual devices matches the same model unsharded."""
import numpy as np
import pytest

import vibetensor as vt
import vibetensor.nn.functional as F
from vibetensor.fabric import Replicate, Shard, distribute_tensor, init_device_mesh


@pytest.mark.parametrize("opt", ["SGD", "AdamW"])
def test_tp_mlp_training_matches_unsharded(cpu_devices, opt):
    mesh = init_device_mesh("cpu", (2, 2), mesh_dim_names=("dp", "tp"))
    rs = np.random.RandomState(0)
    arrs = [rs.randn(10, 6) * 0.3, rs.randn(10) * 0.1, rs.randn(4, 10) * 0.3, rs.randn(4) * 0.1]
    layouts = [[Replicate(), Shard(0)], [Replicate(), Shard(0)], [Replicate(), Shard(1)], [Replicate(), Replicate()]]
    plain = [vt.tensor(a, dtype=vt.float64, requires_grad=True) for a in arrs]
    shard = [distribute_tensor(vt.tensor(a, dtype=vt.float64, requires_grad=True), mesh, pl)
             for a, pl in zip(arrs, layouts)]
    o1 = getattr(vt.optim, opt)(plain, lr=0.05)
    o2 = getattr(vt.optim, opt)(shard, lr=0.05)

    def loss_fn(ps, x, y):
        h = F.gelu(F.linear(x, ps[0], ps[1]))
        return ((F.linear(h, ps[2], ps[3]) - y) ** 2).mean()
    for step in range(3):
        x, y = rs.randn(8, 6), rs.randn(8, 4)
        l1 = loss_fn(plain, vt.tensor(x, dtype=vt.float64), vt.tensor(y, dtype=vt.float64))
        xd = distribute_tensor(vt.tensor(x, dtype=vt.float64), mesh, [Shard(0), Replicate()])
        yd = distribute_tensor(vt.tensor(y, dtype=vt.float64), mesh, [Shard(0), Replicate()])
        l2 = loss_fn(shard, xd, yd)
        np.testing.assert_allclose(l2.item(), l1.item(), rtol=1e-10)
        for o, l in ((o1, l1), (o2, l2)):
            o.zero_grad()
            l.backward()
            o.step()
    for p, s, pl in zip(plain, shard, layouts):
        assert s.placements == tuple(pl)
        np.testing.assert_allclose(s.detach().full_tensor().numpy(), p.detach().numpy(), rtol=1e-9, atol=1e-12)
