"""nn.utils: gradient clipping and parameter/vector conversion, against torch."""
import math

import numpy as np
import pytest
import torch

import vibetensor as vt
from vibetensor import nn

SHAPES = [(4, 3), (5,), (2, 3, 2)]


def params_with_grads(seed=0, scale=1.0):
    r = np.random.RandomState(seed)
    vps, tps = [], []
    for s in SHAPES:
        w, g = r.randn(*s), r.randn(*s) * scale
        vp, tp = nn.Parameter(vt.tensor(w)), torch.nn.Parameter(torch.tensor(w))
        vp.grad, tp.grad = vt.tensor(g), torch.tensor(g)
        vps.append(vp)
        tps.append(tp)
    return vps, tps


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    vps, tps = params_with_grads()
    vn = nn.utils.clip_grad_norm_(vps, max_norm, norm_type)
    tn = torch.nn.utils.clip_grad_norm_(tps, max_norm, norm_type)
    assert isinstance(vn, vt.Tensor) and vn.ndim == 0
    assert vn.item() == pytest.approx(tn.item(), rel=1e-12)
    for vp, tp in zip(vps, tps):
        np.testing.assert_allclose(vp.grad.numpy(), tp.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_clip_grad_norm_edge_cases():
    vps, _ = params_with_grads()
    vps.append(nn.Parameter(vt.zeros(3)))  # no grad: ignored
    n = nn.utils.clip_grad_norm_(vps, 1.0)
    assert n.item() > 1.0
    total = math.sqrt(sum(float((p.grad * p.grad).sum()) for p in vps if p.grad is not None))
    assert total == pytest.approx(1.0, rel=1e-5)
    single = nn.Parameter(vt.ones(4))
    single.grad = vt.full((4,), 2.0)
    assert nn.utils.clip_grad_norm_(single, 10.0).item() == pytest.approx(4.0)
    assert nn.utils.clip_grad_norm_([nn.Parameter(vt.ones(1))], 1.0).item() == 0.0
    bad = nn.Parameter(vt.ones(2))
    bad.grad = vt.tensor([1.0, math.nan])
    with pytest.raises(RuntimeError, match="non-finite"):
        nn.utils.clip_grad_norm_([bad], 1.0, error_if_nonfinite=True)
    assert math.isnan(nn.utils.clip_grad_norm_([bad], 1.0).item())


def test_clip_grad_value_matches_torch():
    vps, tps = params_with_grads(scale=2.0)
    nn.utils.clip_grad_value_(vps, 0.7)
    torch.nn.utils.clip_grad_value_(tps, 0.7)
    for vp, tp in zip(vps, tps):
        np.testing.assert_array_equal(vp.grad.numpy(), tp.grad.numpy())


def test_parameters_vector_round_trip():
    vps, tps = params_with_grads()
    v = nn.utils.parameters_to_vector(vps)
    np.testing.assert_array_equal(v.detach().numpy(), torch.nn.utils.parameters_to_vector(tps).detach().numpy())
    new = vt.arange(v.numel(), dtype=vt.float64)
    nn.utils.vector_to_parameters(new, vps)
    assert vps[1].detach().numpy().tolist() == [12.0, 13.0, 14.0, 15.0, 16.0]
    assert isinstance(vps[0], nn.Parameter) and tuple(vps[2].shape) == (2, 3, 2)
    with pytest.raises(vt.ShapeError, match="hold 29 elements"):
        nn.utils.vector_to_parameters(vt.zeros(5), vps)


@pytest.mark.parametrize("dtype", [vt.float16, vt.bfloat16])
def test_clip_grad_norm_half_grads_do_not_overflow(dtype):
    g = np.full((64,), 300.0)  # squares (90000) overflow float16
    p = nn.Parameter(vt.zeros(64, dtype=dtype))
    p.grad = vt.tensor(g).to(dtype)
    n = nn.utils.clip_grad_norm_([p], 1.0)
    assert n.dtype == dtype and n.item() == pytest.approx(2400.0, rel=1e-2)
    np.testing.assert_allclose(p.grad.float().numpy(), g / 2400.0, rtol=1e-2)
