"""The same nn/optim code on CUDA (marked gpu: skipped without a GPU)."""
import numpy as np
import pytest

import vibetensor as vt
import vibetensor.nn.functional as F
from vibetensor import nn

pytestmark = pytest.mark.gpu


def test_module_cuda_keeps_identity_and_matches_cpu():
    vt.manual_seed(0)
    m = nn.Sequential(nn.Linear(6, 16), nn.GELU(), nn.LayerNorm(16), nn.Linear(16, 3))
    x = vt.randn(5, 6)
    ref = m(x).detach().numpy()
    w = m[0].weight
    m.cuda()
    assert m[0].weight is w and w.device.type == "cuda"
    out = m(x.cuda())
    assert out.device.type == "cuda"
    np.testing.assert_allclose(out.detach().cpu().numpy(), ref, rtol=1e-4, atol=1e-5)
    m.cpu()
    assert w.device == vt.device("cpu")


def test_mlp_and_gpt_train_on_cuda():
    from tests.nn.test_nn_training import TinyGPT, blobs, gpt_batch
    vt.manual_seed(0)
    x, y = blobs()
    x, y = x.cuda(), y.cuda()
    model = nn.Sequential(nn.Linear(3, 32), nn.ReLU(), nn.Linear(32, 3)).cuda()
    opt = vt.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]

    gpt = TinyGPT().cuda()
    opt = vt.optim.AdamW(gpt.parameters(), lr=1e-2)  # fused multi-tensor kernel by default on CUDA
    losses = []
    for s in range(40):
        xb, yb = gpt_batch(seed=s)
        logits = gpt(xb.cuda())
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), yb.cuda().reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(gpt.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.3 * np.mean(losses[:3])


def test_clip_grad_norm_on_cuda_matches_cpu():
    r = np.random.RandomState(0)
    grads = [r.randn(4, 3), r.randn(7)]
    res = {}
    for dev in ("cpu", "cuda"):
        ps = [nn.Parameter(vt.zeros(*g.shape, device=dev)) for g in grads]
        for p, g in zip(ps, grads):
            p.grad = vt.tensor(g.astype(np.float32), device=dev)
        n = nn.utils.clip_grad_norm_(ps, 0.5)
        assert n.device.type == dev
        res[dev] = (n.item(), [p.grad.cpu().numpy() for p in ps])
    assert res["cpu"][0] == pytest.approx(res["cuda"][0], rel=1e-5)
    for a, b in zip(res["cpu"][1], res["cuda"][1]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_optimizer_state_moves_to_param_device_on_load(tmp_path):
    p = nn.Parameter(vt.ones(3))
    opt = vt.optim.Adam([p])
    p.grad = vt.ones(3)
    opt.step()
    vt.save(opt.state_dict(), tmp_path / "o.st")
    q = nn.Parameter(vt.ones(3, device="cuda"))
    opt2 = vt.optim.Adam([q])
    opt2.load_state_dict(vt.load(tmp_path / "o.st"))
    assert opt2.state[q]["exp_avg"].device.type == "cuda"
    q.grad = vt.ones(3, device="cuda")
    opt2.step()
