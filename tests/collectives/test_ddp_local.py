"""DistributedDataParallel in single-process multi-device mode (local transport, 4 virtual CPU devices)."""
import copy

import numpy as np
import pytest

import vibetensor as vt
import vibetensor.nn as nn
import vibetensor.nn.functional as F
from vibetensor.nn.parallel import DistributedDataParallel as DDP

dist = vt.collectives


class Net(nn.Module):
    def __init__(self, unused=False):
        super().__init__()
        self.fc1 = nn.Linear(5, 16, dtype=vt.float64)
        self.fc2 = nn.Linear(16, 8, dtype=vt.float64)
        self.fc3 = nn.Linear(8, 3, dtype=vt.float64)
        self.extra = nn.Linear(3, 3, dtype=vt.float64) if unused else None

    def forward(self, x, use_extra=False):
        h = self.fc3(F.tanh(self.fc2(F.tanh(self.fc1(x)))))
        return self.extra(h) if use_extra else h


def _params(m):
    return [p.detach().numpy().copy() for p in m.parameters()]


def _data(steps, batch=16):
    rng = np.random.default_rng(1)
    return [(vt.tensor(rng.standard_normal((batch, 5))), vt.tensor(rng.standard_normal((batch, 3))))
            for _ in range(steps)]


def _train(model, step_fn, data, lr=0.1):
    opt = vt.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    for x, y in data:
        opt.zero_grad()
        step_fn(x, y)
        opt.step()


def test_ddp_local_matches_single_device(local_devices):
    vt.manual_seed(3)
    ref = Net().to("cpu:0")
    model = copy.deepcopy(ref)
    data = _data(5)
    _train(ref, lambda x, y: F.mse_loss(ref(x.to("cpu:0")), y.to("cpu:0")).backward(), data)
    ddp = DDP(model, bucket_cap_mb=0.0005)  # ~500 bytes: several buckets
    assert len(ddp.bucket_sizes()) > 2
    _train(model, lambda x, y: F.mse_loss(ddp(x.to("cpu:0")), y.to("cpu:0")).backward(), data)
    for a, b in zip(_params(ref), _params(model)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    # replicas follow the first device at the next forward
    ddp(vt.zeros((4, 5), dtype=vt.float64, device="cpu:0"))
    for rep in ddp._replicas[1:]:
        for a, b in zip(_params(model), _params(rep)):
            np.testing.assert_array_equal(a, b)
        assert next(rep.parameters()).device.type == "cpu"


def test_ddp_buckets_launch_during_backward(local_devices):
    vt.manual_seed(0)
    model = Net().to("cpu:0")
    ddp = DDP(model, bucket_cap_mb=0.0005)
    pg = ddp.process_group
    launched_with_pending = []
    orig = pg.all_reduce

    def spy(*a, **k):
        launched_with_pending.append(sum(b.pending for b in ddp._buckets))
        return orig(*a, **k)
    pg.all_reduce = spy
    try:
        x = vt.randn(8, 5, dtype=vt.float64, device="cpu:0")
        F.mse_loss(ddp(x), vt.zeros((8, 3), dtype=vt.float64, device="cpu:0")).backward()
    finally:
        del pg.all_reduce
    assert len(launched_with_pending) == len(ddp._buckets)
    assert launched_with_pending[0] > 0  # the first bucket left while other gradients were still pending
    assert all(p.grad is not None for p in model.parameters())


def test_ddp_no_sync_accumulates(local_devices):
    vt.manual_seed(1)
    ref = Net().to("cpu:0")
    model = copy.deepcopy(ref)
    ddp = DDP(model)
    (x1, y1), (x2, y2) = _data(2)
    for x, y in ((x1, y1), (x2, y2)):
        F.mse_loss(ref(x.to("cpu:0")), y.to("cpu:0")).backward()
    with ddp.no_sync():
        F.mse_loss(ddp(x1.to("cpu:0")), y1.to("cpu:0")).backward()
    F.mse_loss(ddp(x2.to("cpu:0")), y2.to("cpu:0")).backward()
    for a, b in zip(ref.parameters(), model.parameters()):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_ddp_unused_parameters(local_devices):
    vt.manual_seed(2)
    model = Net(unused=True).to("cpu:0")
    x = vt.randn(8, 5, dtype=vt.float64, device="cpu:0")
    ddp = DDP(copy.deepcopy(model), find_unused_parameters=True, gradient_as_bucket_view=True)
    ddp(x).sum().backward()
    g = {n: p.grad for n, p in ddp.module.named_parameters()}
    assert g["extra.weight"] is not None and float(g["extra.weight"].abs().sum()) == 0.0
    ref = copy.deepcopy(model)
    ref(x).sum().backward()
    np.testing.assert_allclose(g["fc1.weight"].numpy(), ref.fc1.weight.grad.numpy(), rtol=1e-9)
    plain = DDP(copy.deepcopy(model))
    plain(x).sum().backward()  # extra unused: its bucket never completes
    with pytest.raises(dist.CollectiveError, match="find_unused_parameters=True"):
        plain(x)


def test_ddp_errors(local_devices):
    with pytest.raises(TypeError, match="vt.nn.Module"):
        DDP(lambda x: x)
    with pytest.raises(dist.CollectiveError, match="first device cpu:0"):
        DDP(Net().to("cpu:2"))


def test_distributed_sampler_and_loader():
    from vibetensor.utils.data import DataLoader, DistributedSampler, TensorDataset
    ds = TensorDataset(vt.arange(11, dtype=vt.float32).reshape(11, 1), vt.arange(11))
    parts = [list(DistributedSampler(ds, num_replicas=3, rank=r, shuffle=False)) for r in range(3)]
    assert parts == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8, 0]]
    s = [DistributedSampler(ds, num_replicas=3, rank=r, seed=4) for r in range(3)]
    e0 = [list(x) for x in s]
    assert set(sum(e0, [])) == set(range(11)) and len(sum(e0, [])) == 12  # padded to 3 x 4 by wrapping
    for x in s:
        x.set_epoch(1)
    e1 = [list(x) for x in s]
    assert e0 != e1 and set(sum(e1, [])) == set(range(11)) and all(len(p) == 4 for p in e1)
    dl = [list(DistributedSampler(ds, num_replicas=3, rank=r, shuffle=False, drop_last=True)) for r in range(3)]
    assert dl == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    batches = list(DataLoader(ds, batch_size=4, drop_last=True))
    assert len(batches) == 2 and tuple(batches[0][0].shape) == (4, 1)
    np.testing.assert_array_equal(batches[1][1].numpy(), [4, 5, 6, 7])
    vt.manual_seed(0)
    a = [b[1].tolist() for b in DataLoader(ds, batch_size=5, shuffle=True)]
    assert sorted(sum(a, [])) == list(range(11)) and [len(b) for b in a] == [5, 5, 1]
    with pytest.raises(ValueError, match="invalid rank"):
        DistributedSampler(ds, num_replicas=2, rank=2)
    with pytest.raises(vt.ShapeError, match="same first dimension"):
        TensorDataset(vt.zeros(3), vt.zeros(4))
