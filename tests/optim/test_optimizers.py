"""SGD / Adam / AdamW against torch.optim over several steps (float64), plus state dicts and resume."""
import numpy as np
import pytest
import torch

import vibetensor as vt
from vibetensor import nn

SHAPES = [(4, 3), (3,), (2, 2, 2)]


def make_params(seed=0):
    r = np.random.RandomState(seed)
    arrs = [r.randn(*s) for s in SHAPES]
    vps = [nn.Parameter(vt.tensor(a)) for a in arrs]
    tps = [torch.nn.Parameter(torch.tensor(a)) for a in arrs]
    return vps, tps


def groups(ps, split):
    if not split:
        return ps
    return [{"params": ps[:1]}, {"params": ps[1:], "lr": 0.05}]


def run_steps(vopt, topt, vps, tps, steps, seed=1):
    r = np.random.RandomState(seed)
    for _ in range(steps):
        for vp, tp in zip(vps, tps):
            g = r.randn(*tp.shape)
            vp.grad = vt.tensor(g)
            tp.grad = torch.tensor(g)
        vopt.step()
        topt.step()
    for vp, tp in zip(vps, tps):
        np.testing.assert_allclose(vp.detach().numpy(), tp.detach().numpy(), rtol=1e-10, atol=1e-12)


CASES = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.1, "weight_decay": 0.01}),
    ("SGD", {"lr": 0.1, "momentum": 0.8, "nesterov": True, "weight_decay": 0.05}),
    ("SGD", {"lr": 0.1, "momentum": 0.5, "maximize": True}),
    ("Adam", {"lr": 0.01}),
    ("Adam", {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}),
    ("Adam", {"lr": 0.01, "amsgrad": True, "maximize": True}),
    ("AdamW", {"lr": 0.01}),
    ("AdamW", {"lr": 0.02, "weight_decay": 0.1, "amsgrad": True}),
]


@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("name,kw", CASES)
def test_matches_torch(name, kw, split):
    vps, tps = make_params()
    vopt = getattr(vt.optim, name)(groups(vps, split), **kw)
    topt = getattr(torch.optim, name)(groups(tps, split), **kw)
    run_steps(vopt, topt, vps, tps, 6)


def test_state_dict_format_matches_torch():
    vps, tps = make_params()
    vopt, topt = vt.optim.AdamW(groups(vps, True), lr=0.01, amsgrad=True), \
        torch.optim.AdamW(groups(tps, True), lr=0.01, amsgrad=True)
    run_steps(vopt, topt, vps, tps, 2)
    vsd, tsd = vopt.state_dict(), topt.state_dict()
    assert sorted(vsd) == ["param_groups", "state"]
    assert list(vsd["state"]) == list(tsd["state"]) == [0, 1, 2]
    assert list(vsd["state"][0]) == list(tsd["state"][0])  # step, exp_avg, exp_avg_sq, max_exp_avg_sq
    assert vsd["state"][0]["step"].item() == 2.0
    for vg, tg in zip(vsd["param_groups"], tsd["param_groups"]):
        assert vg["params"] == tg["params"]
        for k in ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "decoupled_weight_decay"):
            assert vg[k] == tg[k], k
    sgd = vt.optim.SGD(vps, lr=0.1, momentum=0.9)
    tsgd = torch.optim.SGD(tps, lr=0.1, momentum=0.9)
    run_steps(sgd, tsgd, vps, tps, 1)
    assert set(sgd.state_dict()["param_groups"][0]) == set(tsgd.state_dict()["param_groups"][0])
    assert list(sgd.state_dict()["state"][0]) == ["momentum_buffer"]


@pytest.mark.parametrize("name,kw", [("SGD", {"lr": 0.1, "momentum": 0.9}), ("AdamW", {"lr": 0.01, "amsgrad": True})])
def test_resume_through_save_load(tmp_path, name, kw):
    """3 steps, checkpoint with vt.save, fresh optimizer loads it, 3 more steps == 6 uninterrupted torch steps."""
    vps, tps = make_params()
    vopt = getattr(vt.optim, name)(vps, **kw)
    topt = getattr(torch.optim, name)(tps, **kw)
    run_steps(vopt, topt, vps, tps, 3, seed=1)
    vt.save({"optim": vopt.state_dict(), "params": [p.detach() for p in vps]}, tmp_path / "ck.safetensors")
    ck = vt.load(tmp_path / "ck.safetensors")
    vps2 = [nn.Parameter(t) for t in ck["params"]]
    vopt2 = getattr(vt.optim, name)(vps2, **kw)
    vopt2.load_state_dict(ck["optim"])
    run_steps(vopt2, topt, vps2, tps, 3, seed=2)


def test_load_torch_optimizer_state():
    """A torch optimizer's state_dict (tensors converted) resumes in vt and tracks torch exactly."""
    vps, tps = make_params()
    topt = torch.optim.Adam(tps, lr=0.01)
    vopt = vt.optim.Adam(vps, lr=0.01)
    run_steps(vopt, topt, vps, tps, 2)

    def conv(x):
        if isinstance(x, torch.Tensor):
            return vt.tensor(x.numpy())
        if isinstance(x, dict):
            return {k: conv(v) for k, v in x.items()}
        if isinstance(x, list):
            return [conv(v) for v in x]
        return x
    vopt3 = vt.optim.Adam(vps, lr=0.5)
    vopt3.load_state_dict(conv(topt.state_dict()))
    assert vopt3.param_groups[0]["lr"] == 0.01 and vopt3.param_groups[0]["params"][0] is vps[0]
    run_steps(vopt3, topt, vps, tps, 2, seed=3)


def test_load_state_dict_casts_to_param_dtype_and_validates():
    p = nn.Parameter(vt.zeros(3, dtype=vt.float32))
    opt = vt.optim.Adam([p])
    sd = {"state": {0: {"step": vt.tensor(4.0), "exp_avg": vt.ones(3, dtype=vt.float64),
                        "exp_avg_sq": vt.ones(3, dtype=vt.float64)}},
          "param_groups": [dict(opt.state_dict()["param_groups"][0])]}
    opt.load_state_dict(sd)
    assert opt.state[p]["exp_avg"].dtype == vt.float32 and opt.state[p]["step"].item() == 4.0
    bad = {"state": {}, "param_groups": [{**sd["param_groups"][0], "params": [0, 1]}]}
    with pytest.raises(ValueError, match="holds 2 parameters"):
        opt.load_state_dict(bad)


def test_param_groups_zero_grad_and_errors():
    a, b = nn.Parameter(vt.ones(2)), nn.Parameter(vt.ones(3))
    opt = vt.optim.SGD([a], lr=0.1)
    opt.add_param_group({"params": b, "lr": 0.01, "momentum": 0.9})
    assert opt.param_groups[1]["lr"] == 0.01 and opt.param_groups[1]["dampening"] == 0
    a.grad, b.grad = vt.ones(2), vt.ones(3)
    opt.step()
    np.testing.assert_allclose(a.detach().numpy(), 0.9)
    np.testing.assert_allclose(b.detach().numpy(), 0.99)
    opt.zero_grad(set_to_none=False)
    assert a.grad.tolist() == [0.0, 0.0]
    opt.zero_grad()
    assert a.grad is None
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [a]})
    with pytest.raises(ValueError, match="empty parameter list"):
        vt.optim.Adam([])
    with pytest.raises(ValueError, match="Invalid learning rate"):
        vt.optim.SGD([a], lr=-1)
    with pytest.raises(ValueError, match="Nesterov"):
        vt.optim.SGD([a], lr=0.1, nesterov=True)
    with pytest.raises(TypeError, match="iterable"):
        vt.optim.SGD(a, lr=0.1)
    nl = a * 2
    with pytest.raises(ValueError, match="non-leaf"):
        vt.optim.SGD([nl], lr=0.1)


def test_closure_and_named_params():
    m = nn.Linear(2, 1)
    opt = vt.optim.SGD(m.named_parameters(), lr=0.1)
    assert opt.param_groups[0]["param_names"] == ["weight", "bias"]
    x = vt.randn(4, 2)

    def closure():
        opt.zero_grad()
        loss = (m(x) ** 2).mean()
        loss.backward()
        return loss
    l0 = opt.step(closure).item()
    l1 = opt.step(closure).item()
    assert l1 < l0


def test_float32_params_step():
    p = nn.Parameter(vt.ones(4))
    opt = vt.optim.AdamW([p], lr=0.1)
    p.grad = vt.ones(4)
    opt.step()
    assert p.dtype == vt.float32 and opt.state[p]["exp_avg"].dtype == vt.float32
    np.testing.assert_allclose(p.detach().numpy(), (1 - 0.1 * 0.01) - 0.1 * (1 / (1 + 1e-8)), rtol=1e-6)


def test_fused_true_off_cuda_explains():
    p = nn.Parameter(vt.ones(3))
    p.grad = vt.ones(3)
    with pytest.raises(ValueError, match="CUDA-only"):
        vt.optim.AdamW([p], fused=True).step()
    with pytest.raises(ValueError, match="amsgrad"):
        vt.optim.AdamW([p], fused=True, amsgrad=True).step()
    opt = vt.optim.AdamW([p], fused=False)
    opt.step()
    assert opt.state[p]["step"].item() == 1.0


ADAM_CASES = [c for c in CASES if c[0] != "SGD"] + [("AdamW", {"lr": 0.03, "weight_decay": 0.2, "maximize": True})]


@pytest.mark.parametrize("dtype", [vt.float32, vt.float64])
@pytest.mark.parametrize("name,kw", ADAM_CASES)
def test_cpu_numpy_path_is_bit_identical_to_per_op_path(monkeypatch, name, kw, dtype):
    """The CPU update through numpy (adam._numpy_step) against the dispatched per-tensor ops, 7 steps,
    a non-contiguous gradient included; parameters and every state tensor must match exactly."""
    from vibetensor.optim import adam
    r = np.random.RandomState(4)
    init = [r.randn(*s) for s in SHAPES + [(5, 7)]]
    grads = [[r.randn(*a.shape) for a in init] for _ in range(7)]
    runs = []
    for numpy_path in (True, False):
        monkeypatch.setattr(adam, "NUMPY_PATH", numpy_path)
        ps = [nn.Parameter(vt.tensor(a, dtype=dtype)) for a in init]
        opt = getattr(vt.optim, name)(ps, **kw)
        versions = []
        for gs in grads:
            for p, g in zip(ps, gs):
                p.grad = vt.tensor(g.T.copy().T if g.ndim == 2 else g, dtype=dtype)
            v0 = [p._version for p in ps]
            opt.step()
            versions.append([p._version - v for p, v in zip(ps, v0)])
        state = [{k: t.numpy() for k, t in opt.state[p].items()} for p in ps]
        runs.append(([p.detach().numpy() for p in ps], state, versions))
    (pa, sa, va), (pb, sb, vb) = runs
    for x, y in zip(pa, pb):
        assert x.dtype == y.dtype and np.array_equal(x, y)
    for da, db in zip(sa, sb):
        assert da.keys() == db.keys()
        for k in da:
            assert np.array_equal(da[k], db[k]), k
    assert all(v > 0 for row in va for v in row)  # in-place updates bump the version counter


def test_cpu_numpy_path_steps_a_model_and_skips_what_it_cannot_take():
    """float16 parameters (and gradients of another dtype) take the dispatched path and still train."""
    from vibetensor.optim import adam
    p16 = nn.Parameter(vt.ones(3, dtype=vt.float16))
    p16.grad = vt.ones(3, dtype=vt.float16)
    state = {"exp_avg": vt.zeros(3, dtype=vt.float16), "exp_avg_sq": vt.zeros(3, dtype=vt.float16)}
    assert not adam._numpy_ok(p16, state, False)
    p = nn.Parameter(vt.ones(3))
    p.grad = vt.ones(3, dtype=vt.float64)
    assert not adam._numpy_ok(p, {"exp_avg": vt.zeros(3), "exp_avg_sq": vt.zeros(3)}, False)
    ro = vt.zeros(3)
    ro._data.flags.writeable = False  # e.g. state loaded from a read-only buffer: the dispatched path explains
    p.grad = vt.ones(3)
    assert adam._numpy_ok(p, {"exp_avg": vt.zeros(3), "exp_avg_sq": vt.zeros(3)}, False)
    assert not adam._numpy_ok(p, {"exp_avg": ro, "exp_avg_sq": vt.zeros(3)}, False)
    opt = vt.optim.AdamW([p16], lr=0.1)
    opt.step()
    assert p16.dtype == vt.float16 and float(p16.detach().float().numpy()[0]) < 1.0


@pytest.mark.gpu
@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_fused_adamw_on_cuda_matches_per_tensor_path(wd):
    r = np.random.RandomState(0)
    arrs = [r.randn(*s).astype(np.float32) for s in SHAPES + [(70000,)]]  # one spans many kernel chunks
    runs = {}
    for fused in (True, False):
        ps = [nn.Parameter(vt.tensor(a, device="cuda")) for a in arrs]
        opt = vt.optim.AdamW(ps, lr=0.01, weight_decay=wd, fused=fused)
        rg = np.random.RandomState(1)
        keep = []  # old grads stay alive: each step's grads are new buffers (the fused path rebinds them)
        for _ in range(4):
            for p in ps:
                p.grad = vt.tensor(rg.randn(*p.shape).astype(np.float32), device="cuda")
                keep.append(p.grad)
            opt.step()
        runs[fused] = [p.detach().cpu().numpy() for p in ps]
        assert opt.state[ps[0]]["step"].item() == 4.0
    for a, b in zip(runs[True], runs[False]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_load_state_dict_fills_missing_group_options():
    p = nn.Parameter(vt.ones(2))
    opt = vt.optim.Adam([p], lr=0.1)
    sd = opt.state_dict()
    for k in ("maximize", "decoupled_weight_decay", "amsgrad"):
        del sd["param_groups"][0][k]
    opt2 = vt.optim.Adam([p], lr=0.5)
    opt2.load_state_dict(sd)
    assert opt2.param_groups[0]["lr"] == 0.1 and opt2.param_groups[0]["maximize"] is False
    p.grad = vt.ones(2)
    opt2.step()


@pytest.mark.parametrize("dtype", [vt.float32, vt.float64])
@pytest.mark.parametrize("start", [0.0, 7.0, 2.0 ** 24, 2.0 ** 53])
def test_step_counter_bump_matches_add_(dtype, start):
    from vibetensor.optim.optimizer import bump_step
    s, ref = vt.tensor(start, dtype=dtype), vt.tensor(start, dtype=dtype)
    v = s._version
    got = bump_step(s)
    ref.add_(1)
    assert s.dtype is dtype and s.item() == ref.item() == got and s._version == v + 1
