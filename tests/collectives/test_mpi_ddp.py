"""DDP across MPI ranks == single-process training on the concatenated batch."""
import copy

import numpy as np
import pytest

import vibetensor as vt
import vibetensor.nn as nn
import vibetensor.nn.functional as F
from vibetensor.nn.parallel import DistributedDataParallel as DDP

dist = vt.collectives
pytestmark = pytest.mark.mpi


class Net(nn.Module):
    def __init__(self, dtype=vt.float64):
        super().__init__()
        self.fc1 = nn.Linear(6, 32, dtype=dtype)
        self.fc2 = nn.Linear(32, 16, dtype=dtype)
        self.fc3 = nn.Linear(16, 2, dtype=dtype)
        self.register_buffer("steps", vt.zeros(1, dtype=dtype))

    def forward(self, x):
        return self.fc3(F.relu(self.fc2(F.tanh(self.fc1(x)))))


def _batches(steps, per_rank, n):
    rng = np.random.default_rng(11)
    return [(rng.standard_normal((per_rank * n, 6)), rng.standard_normal((per_rank * n, 2))) for _ in range(steps)]


@pytest.mark.parametrize("bucket_cap_mb,as_view", [(25, False), (0.002, True)])
def test_ddp_matches_single_process(world, bucket_cap_mb, as_view):
    n, r = world.size(), world.rank()
    vt.manual_seed(100 + r)  # different init per rank: DDP must broadcast rank 0's
    model = Net()
    model.steps.fill_(float(r))
    ddp = DDP(model, bucket_cap_mb=bucket_cap_mb, gradient_as_bucket_view=as_view)
    assert float(model.steps.item()) == 0.0  # buffers broadcast from rank 0 too
    ref = copy.deepcopy(model)  # now rank 0's initial weights on every rank
    opt = vt.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    ref_opt = vt.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9)
    per = 3
    for step, (xb, yb) in enumerate(_batches(4, per, n)):
        opt.zero_grad()
        ref_opt.zero_grad()
        x, y = vt.tensor(xb[r * per:(r + 1) * per]), vt.tensor(yb[r * per:(r + 1) * per])
        F.mse_loss(ddp(x), y).backward()
        F.mse_loss(ref(vt.tensor(xb)), vt.tensor(yb)).backward()
        opt.step()
        ref_opt.step()
    for (name, a), b in zip(model.named_parameters(), ref.parameters()):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-9, atol=1e-12, err_msg=name)
    # every rank holds identical parameters
    for p in model.parameters():
        lst = [vt.zeros_like(p.detach()) for _ in range(n)]
        dist.all_gather(lst, p.detach())
        for q in lst:
            np.testing.assert_array_equal(q.numpy(), p.detach().numpy())


def test_ddp_no_sync_and_sampler(world):
    from vibetensor.utils.data import DataLoader, DistributedSampler, TensorDataset
    n, r = world.size(), world.rank()
    vt.manual_seed(7)
    model = Net()
    ddp = DDP(model)
    ref = copy.deepcopy(model)
    X = vt.tensor(np.random.default_rng(3).standard_normal((8 * n, 6)))
    Y = vt.tensor(np.random.default_rng(4).standard_normal((8 * n, 2)))
    ds = TensorDataset(X, Y)
    sampler = DistributedSampler(ds, shuffle=True, seed=5)
    sampler.set_epoch(2)
    assert sampler.num_replicas == n and sampler.rank == r
    loader = DataLoader(ds, batch_size=4, sampler=sampler)
    batches = list(loader)
    assert len(batches) == 2
    with ddp.no_sync():
        F.mse_loss(ddp(batches[0][0]), batches[0][1], reduction="sum").backward()
    F.mse_loss(ddp(batches[1][0]), batches[1][1], reduction="sum").backward()
    # reference: the whole dataset on one process, sum loss, averaged over ranks like DDP does
    F.mse_loss(ref(X), Y, reduction="sum").backward()
    for a, b in zip(model.parameters(), ref.parameters()):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy() / n, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("with_ddp", [False, True])
def test_zero_redundancy_optimizer_matches_adam(world, with_ddp):
    from vibetensor.collectives.zero import ZeroRedundancyOptimizer
    n, r = world.size(), world.rank()
    vt.manual_seed(21)  # same init everywhere (no DDP broadcast in the plain case)
    model = Net()
    ref = copy.deepcopy(model)
    fwd = DDP(model) if with_ddp else model
    opt = ZeroRedundancyOptimizer(model.parameters(), vt.optim.Adam, lr=0.01, reduce_gradients=not with_ddp)
    assert opt.shard * n >= sum(p.numel() for p in model.parameters())
    ref_opt = vt.optim.Adam(ref.parameters(), lr=0.01)
    per = 2
    for xb, yb in _batches(3, per, n):
        opt.zero_grad()
        ref_opt.zero_grad()
        F.mse_loss(fwd(vt.tensor(xb[r * per:(r + 1) * per])), vt.tensor(yb[r * per:(r + 1) * per])).backward()
        opt.step()
        F.mse_loss(ref(vt.tensor(xb)), vt.tensor(yb)).backward()
        ref_opt.step()
    for a, b in zip(model.parameters(), ref.parameters()):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-7, atol=1e-10)
    # the optimizer state is sharded: this rank holds moments for its slice only
    st = next(iter(opt.state.values()))
    assert st["exp_avg"].numel() == opt.shard
