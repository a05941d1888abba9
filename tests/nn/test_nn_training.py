"""End to end on CPU: an MLP classifier and a tiny causal GPT train (loss falls well below its start),
and a checkpointed run resumes bit-for-bit."""
import math
import time

import numpy as np

import vibetensor as vt
import vibetensor.nn.functional as F
from vibetensor import nn


def blobs(n=240, seed=0):
    """Three Gaussian blobs in 2-d with a nonlinear twist (labels need a hidden layer)."""
    r = np.random.RandomState(seed)
    y = r.randint(0, 3, n)
    ang = y * 2 * np.pi / 3
    x = np.stack([np.cos(ang), np.sin(ang)], 1) * 2.0 + r.randn(n, 2) * 0.4
    x = np.concatenate([x, x[:, :1] * x[:, 1:]], 1)
    return vt.tensor(x.astype(np.float32)), vt.tensor(y)


def test_mlp_classifier_trains():
    vt.manual_seed(0)
    x, y = blobs()
    model = nn.Sequential(nn.Linear(3, 32), nn.ReLU(), nn.Linear(32, 32), nn.GELU(), nn.Linear(32, 3))
    opt = vt.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = nn.CrossEntropyLoss()
    t0 = time.perf_counter()
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert time.perf_counter() - t0 < 20
    assert losses[-1] < 0.3 * losses[0], losses[::10]
    with vt.no_grad():
        acc = (model(x).argmax(-1) == y).float().mean().item()
    assert acc > 0.9


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(approximate="tanh"), nn.Linear(4 * dim, dim))

    def forward(self, x):
        h = self.ln1(x)
        a, _ = self.attn(h, h, h, need_weights=False, is_causal=True)
        x = x + a
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    def __init__(self, vocab=12, dim=32, heads=4, layers=2, ctx=16):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(ctx, dim)
        self.blocks = nn.ModuleList([Block(dim, heads) for _ in range(layers)])
        self.ln_f = nn.RMSNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.tok.weight  # tied embeddings
        nn.init.normal_(self.tok.weight, 0.0, 0.02)  # GPT-2's init: logits start near uniform
        nn.init.normal_(self.pos.weight, 0.0, 0.02)
        for name, p in self.named_parameters():
            if name.endswith("mlp.2.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * layers))

    def forward(self, idx):
        T = idx.shape[1]
        x = self.tok(idx) + self.pos(vt.arange(T, device=idx.device))
        for b in self.blocks:
            x = b(x)
        return self.head(self.ln_f(x))


def gpt_batch(batch=8, ctx=16, seed=0):
    """Windows of a short repeated sequence: next-token prediction is learnable exactly."""
    pattern = np.array([1, 5, 2, 8, 3, 3, 9, 0, 7, 4, 11, 6])
    stream = np.tile(pattern, 8)
    r = np.random.RandomState(seed)
    starts = r.randint(0, len(stream) - ctx - 1, batch)
    xs = np.stack([stream[s:s + ctx] for s in starts])
    ys = np.stack([stream[s + 1:s + ctx + 1] for s in starts])
    return vt.tensor(xs), vt.tensor(ys)


def gpt_step(model, opt, sched, step):
    x, y = gpt_batch(seed=step)
    logits = model(x)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
    opt.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()
    return loss.item()


def make_gpt():
    model = TinyGPT()
    opt = vt.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01)
    sched = vt.optim.lr_scheduler.get_cosine_schedule_with_warmup(opt, 5, 50, min_lr_ratio=0.1)
    return model, opt, sched


def test_tiny_gpt_trains():
    vt.manual_seed(0)
    model, opt, sched = make_gpt()
    assert model.head.weight is model.tok.weight
    t0 = time.perf_counter()
    losses = [gpt_step(model, opt, sched, s) for s in range(40)]
    assert time.perf_counter() - t0 < 30
    assert losses[0] > 2.0  # about ln(12) at the start
    assert np.mean(losses[-5:]) < 0.3 * np.mean(losses[:3]), losses[::6]


def test_checkpoint_resume_is_exact(tmp_path):
    vt.manual_seed(1)
    model, opt, sched = make_gpt()
    for s in range(4):
        gpt_step(model, opt, sched, s)
    vt.save({"model": model.state_dict(), "optim": opt.state_dict(), "sched": sched.state_dict(), "step": 4},
            tmp_path / "ck.safetensors")
    ref = [gpt_step(model, opt, sched, s) for s in range(4, 7)]

    vt.manual_seed(99)  # different init: everything must come from the checkpoint
    model2, opt2, sched2 = make_gpt()
    ck = vt.load(tmp_path / "ck.safetensors")
    model2.load_state_dict(ck["model"])
    opt2.load_state_dict(ck["optim"])
    sched2.load_state_dict(ck["sched"])
    assert model2.head.weight is model2.tok.weight  # tying survives load_state_dict
    got = [gpt_step(model2, opt2, sched2, s) for s in range(ck["step"], 7)]
    assert got == ref
    for (n, a), b in zip(model.named_parameters(), model2.parameters()):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy(), err_msg=n)
