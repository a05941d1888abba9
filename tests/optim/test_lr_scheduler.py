"""LR schedulers against torch's lr sequences, state_dict resume, and the cosine-with-warmup helper."""
import math

import pytest
import torch

import vibetensor as vt
from vibetensor import nn
from vibetensor.optim import lr_scheduler as vls


def opts(lrs=(0.1, 0.02)):
    vp = [nn.Parameter(vt.zeros(2)) for _ in lrs]
    tp = [torch.nn.Parameter(torch.zeros(2)) for _ in lrs]
    vo = vt.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(vp, lrs)], lr=1.0, momentum=0.9)
    to = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(tp, lrs)], lr=1.0, momentum=0.9)
    return vo, to


def sequence(opt, sched, n):
    out = [[g["lr"] for g in opt.param_groups]]
    for _ in range(n):
        opt.step()
        sched.step()
        out.append([g["lr"] for g in opt.param_groups])
        assert sched.get_last_lr() == out[-1]
    return out


def lam(e):
    return 0.95 ** e + 0.01 * (e % 3)


def build(mod, opt, kind):
    if kind == "lambda":
        return mod.LambdaLR(opt, lam)
    if kind == "lambda_list":
        return mod.LambdaLR(opt, [lam, lambda e: 1.0 / (e + 1)])
    if kind == "step":
        return mod.StepLR(opt, step_size=3, gamma=0.5)
    if kind == "exp":
        return mod.ExponentialLR(opt, gamma=0.9)
    if kind == "cosine":
        return mod.CosineAnnealingLR(opt, T_max=7, eta_min=0.001)
    if kind == "linear":
        return mod.LinearLR(opt, start_factor=0.1, end_factor=1.0, total_iters=4)
    if kind == "multistep":
        return mod.MultiStepLR(opt, milestones=[2, 5, 5, 9], gamma=0.5)
    if kind == "constant":
        return mod.ConstantLR(opt, factor=0.25, total_iters=4)
    if kind == "warmup_cosine":
        return mod.SequentialLR(opt, [mod.LinearLR(opt, start_factor=0.01, total_iters=5),
                                      mod.CosineAnnealingLR(opt, T_max=20, eta_min=1e-4)], milestones=[5])
    raise AssertionError(kind)


KINDS = ["lambda", "lambda_list", "step", "exp", "cosine", "linear", "multistep", "constant", "warmup_cosine"]


@pytest.mark.parametrize("kind", KINDS)
def test_lr_sequence_matches_torch(kind):
    vo, to = opts()
    vs, ts = build(vls, vo, kind), build(torch.optim.lr_scheduler, to, kind)
    vseq, tseq = sequence(vo, vs, 30), sequence(to, ts, 30)
    for v, t in zip(vseq, tseq):
        assert v == pytest.approx(t, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("kind", ["step", "cosine", "warmup_cosine", "lambda", "multistep"])
def test_state_dict_resume(kind, tmp_path):
    vo, to = opts()
    vs, ts = build(vls, vo, kind), build(torch.optim.lr_scheduler, to, kind)
    sequence(vo, vs, 8)
    sequence(to, ts, 8)
    vt.save({"optim": vo.state_dict(), "sched": vs.state_dict()}, tmp_path / "s.safetensors")
    ck = vt.load(tmp_path / "s.safetensors")
    vo2, _ = opts()
    vs2 = build(vls, vo2, kind)  # the usual resume order: build both, then load both
    vo2.load_state_dict(ck["optim"])
    vs2.load_state_dict(ck["sched"])
    vseq, tseq = sequence(vo2, vs2, 10), sequence(to, ts, 10)
    for v, t in zip(vseq[1:], tseq[1:]):
        assert v == pytest.approx(t, rel=1e-12, abs=1e-15)


def test_cosine_schedule_with_warmup():
    vo, _ = opts((1.0,))
    s = vls.get_cosine_schedule_with_warmup(vo, num_warmup_steps=4, num_training_steps=14, min_lr_ratio=0.1)
    lrs = [lr for (lr,) in sequence(vo, s, 16)]
    assert lrs[:5] == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    for step in range(4, 15):
        cos = 0.5 * (1 + math.cos(math.pi * (step - 4) / 10))
        assert lrs[step] == pytest.approx(0.1 + 0.9 * cos)
    assert lrs[14] == pytest.approx(0.1) and lrs[16] == pytest.approx(0.1)
    sd = s.state_dict()
    assert sd["lr_lambdas"][0]["num_warmup_steps"] == 4  # a callable object: its settings are saved
    with pytest.raises(ValueError, match="num_warmup_steps"):
        vls.get_cosine_schedule_with_warmup(vo, 10, 5)


def test_scheduler_errors():
    vo, _ = opts()
    with pytest.raises(TypeError, match="not an Optimizer"):
        vls.StepLR(object(), 3)
    with pytest.raises(ValueError, match="Expected 2 lr_lambdas"):
        vls.LambdaLR(vo, [lam])
    with pytest.raises(ValueError, match="milestones"):
        vls.SequentialLR(vo, [vls.StepLR(vo, 2)], milestones=[3])
    vo2, _ = opts()
    with pytest.raises(KeyError, match="initial_lr"):
        vls.StepLR(vo2, 3, last_epoch=4)


def test_reduce_lr_on_plateau_matches_torch(tmp_path):
    vo, to = opts()
    kw = dict(mode="min", factor=0.5, patience=2, threshold=0.01, cooldown=1, min_lr=[0.01, 0.004])
    vs, ts = vls.ReduceLROnPlateau(vo, **kw), torch.optim.lr_scheduler.ReduceLROnPlateau(to, **kw)
    metrics = [1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8]
    for i, m in enumerate(metrics):
        vs.step(vt.tensor(m))
        ts.step(m)
        assert vs.get_last_lr() == pytest.approx(ts.get_last_lr()), i
        if i == 7:
            vt.save(vs.state_dict(), tmp_path / "p.st")
            vs = vls.ReduceLROnPlateau(vo, **kw)
            vs.load_state_dict(vt.load(tmp_path / "p.st"))
    assert vs.get_last_lr() == pytest.approx([0.0125, 0.004])  # reduced three times, floored by min_lr
    with pytest.raises(ValueError, match="factor"):
        vls.ReduceLROnPlateau(vo, factor=1.5)
