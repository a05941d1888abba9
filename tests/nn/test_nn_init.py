"""nn.init: gains, fans, and the distributions of every initialiser (large tensors, loose statistics)."""
import math

import numpy as np
import pytest
import torch

import vibetensor as vt
from vibetensor import nn
from vibetensor.nn import init


@pytest.mark.parametrize("nl,param", [("linear", None), ("conv2d", None), ("sigmoid", None), ("tanh", None),
                                      ("relu", None), ("leaky_relu", None), ("leaky_relu", 0.2),
                                      ("leaky_relu", math.sqrt(5)), ("selu", None)])
def test_calculate_gain_matches_torch(nl, param):
    assert init.calculate_gain(nl, param) == pytest.approx(torch.nn.init.calculate_gain(nl, param))


def test_calculate_gain_errors():
    with pytest.raises(ValueError, match="unsupported nonlinearity"):
        init.calculate_gain("swish")


@pytest.mark.parametrize("shape", [(5, 3), (8, 4, 3, 3), (2, 6, 5)])
def test_fans_match_torch(shape):
    assert init._calculate_fan_in_and_fan_out(vt.empty(shape)) == \
        torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))


def test_fans_need_2d():
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.xavier_uniform_(vt.empty(5))


def stats(t):
    a = t.detach().numpy().astype(np.float64)
    return a.min(), a.max(), a.mean(), a.std()


def test_uniform_normal_constant():
    lo, hi, mean, std = stats(init.uniform_(vt.empty(200, 200), -2.0, 3.0))
    assert -2.0 <= lo and hi <= 3.0 and abs(mean - 0.5) < 0.03 and abs(std - 5 / math.sqrt(12)) < 0.02
    _, _, mean, std = stats(init.normal_(vt.empty(200, 200), 1.5, 0.5))
    assert abs(mean - 1.5) < 0.01 and abs(std - 0.5) < 0.01
    assert init.constant_(vt.empty(3), 2.5).tolist() == [2.5] * 3
    assert init.ones_(vt.empty(2)).tolist() == [1.0, 1.0] and init.zeros_(vt.ones(2)).tolist() == [0.0, 0.0]
    assert init.eye_(vt.empty(2, 3)).tolist() == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]


@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
@pytest.mark.parametrize("nl,a", [("relu", 0), ("leaky_relu", math.sqrt(5)), ("tanh", 0)])
def test_kaiming(mode, nl, a):
    shape = (300, 200)
    fan = 200 if mode == "fan_in" else 300
    std = torch.nn.init.calculate_gain(nl, a) / math.sqrt(fan)
    lo, hi, mean, s = stats(init.kaiming_uniform_(vt.empty(shape), a=a, mode=mode, nonlinearity=nl))
    bound = math.sqrt(3) * std
    assert -bound <= lo and hi <= bound and abs(s - std) < 0.02 * std and abs(mean) < 0.02 * std * 10
    _, _, mean, s = stats(init.kaiming_normal_(vt.empty(shape), a=a, mode=mode, nonlinearity=nl))
    assert abs(s - std) < 0.02 * std and abs(mean) < 0.02 * std * 10
    with pytest.raises(ValueError, match="fan_avg"):
        init.kaiming_uniform_(vt.empty(shape), mode="fan_avg")


def test_xavier():
    shape, gain = (300, 200), 2.0
    std = gain * math.sqrt(2.0 / 500)
    lo, hi, _, s = stats(init.xavier_uniform_(vt.empty(shape), gain=gain))
    assert -math.sqrt(3) * std <= lo and hi <= math.sqrt(3) * std and abs(s - std) < 0.02 * std
    _, _, _, s = stats(init.xavier_normal_(vt.empty(shape), gain=gain))
    assert abs(s - std) < 0.02 * std


def test_trunc_normal():
    t = init.trunc_normal_(vt.empty(200, 200), mean=0.5, std=1.0, a=-1.0, b=2.0)
    lo, hi, mean, std = stats(t)
    tn = torch.nn.init.trunc_normal_(torch.empty(200, 200, dtype=torch.float64), 0.5, 1.0, -1.0, 2.0)
    assert -1.0 <= lo and hi <= 2.0
    assert abs(mean - tn.mean().item()) < 0.02 and abs(std - tn.std().item()) < 0.02
    with pytest.raises(ValueError, match="a < b"):
        init.trunc_normal_(vt.empty(3), a=1.0, b=0.0)


def test_generators_reproducible_and_no_grad_on_parameters():
    p = nn.Parameter(vt.empty(4, 4))
    g = vt.Generator().manual_seed(123)
    init.kaiming_uniform_(p, generator=g)
    first = p.detach().numpy().copy()
    init.kaiming_uniform_(p, generator=vt.Generator().manual_seed(123))
    np.testing.assert_array_equal(p.detach().numpy(), first)
    assert p.is_leaf and p.grad_fn is None and p.requires_grad
    vt.manual_seed(7)
    a = nn.Linear(6, 6).weight.detach().numpy()
    vt.manual_seed(7)
    np.testing.assert_array_equal(nn.Linear(6, 6).weight.detach().numpy(), a)


def test_half_precision_init():
    t = init.normal_(vt.empty(100, 100, dtype=vt.bfloat16))
    assert t.dtype == vt.bfloat16 and abs(stats(t)[3] - 1.0) < 0.03
    t = init.trunc_normal_(vt.empty(50, 50, dtype=vt.float16), std=0.02)
    assert t.dtype == vt.float16 and stats(t)[1] <= 2.0


@pytest.mark.parametrize("shape", [(6, 4), (4, 6), (3, 2, 2)])
def test_orthogonal(shape):
    t = init.orthogonal_(vt.empty(shape, dtype=vt.float64), gain=2.0)
    m = t.numpy().reshape(shape[0], -1) / 2.0
    small = min(m.shape)
    gram = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
    np.testing.assert_allclose(gram, np.eye(small), atol=1e-12)
    with pytest.raises(ValueError, match="2 or more dimensions"):
        init.orthogonal_(vt.empty(3))
