"""BatchNorm, GroupNorm, adaptive pooling, BCE losses and the extra activations against torch."""
import numpy as np
import pytest
import torch

import vibetensor as vt
from tests.nn.test_nn_layers import check_layer
from vibetensor import nn

rng = np.random.RandomState(0)


@pytest.fixture(autouse=True)
def _f64():
    vt.set_default_dtype(vt.float64)
    torch.set_default_dtype(torch.float64)
    yield
    vt.set_default_dtype(vt.float32)
    torch.set_default_dtype(torch.float32)


@pytest.mark.parametrize("vcls,tcls,shape", [(nn.BatchNorm1d, torch.nn.BatchNorm1d, (6, 4)),
                                             (nn.BatchNorm1d, torch.nn.BatchNorm1d, (5, 4, 3)),
                                             (nn.BatchNorm2d, torch.nn.BatchNorm2d, (3, 4, 5, 2))])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_batch_norm_train_then_eval(vcls, tcls, shape, momentum):
    vm, tm = vcls(4, momentum=momentum), tcls(4, momentum=momentum)
    with torch.no_grad():
        tm.weight.normal_()
        tm.bias.normal_()
    check_layer(vm, tm, rng.randn(*shape) * 2, rtol=1e-8, atol=1e-10)  # training forward + backward
    for step in range(1, 4):  # running statistics follow torch's across batches
        x = rng.randn(*shape) * 2 + step
        vm(vt.tensor(x))
        tm(torch.tensor(x))
        np.testing.assert_allclose(vm.running_mean.numpy(), tm.running_mean.numpy(), rtol=1e-10)
        np.testing.assert_allclose(vm.running_var.numpy(), tm.running_var.numpy(), rtol=1e-10)
        assert vm.num_batches_tracked.item() == tm.num_batches_tracked.item() == step + 1
    vm.eval()
    tm.eval()
    x = rng.randn(*shape)
    np.testing.assert_allclose(vm(vt.tensor(x)).detach().numpy(), tm(torch.tensor(x)).detach().numpy(), rtol=1e-9,
                               atol=1e-10)
    assert list(vm.state_dict()) == list(tm.state_dict())


def test_batch_norm_no_running_stats_and_errors():
    check_layer(nn.BatchNorm2d(3, affine=False, track_running_stats=False),
                torch.nn.BatchNorm2d(3, affine=False, track_running_stats=False), rng.randn(2, 3, 4, 4),
                rtol=1e-8, atol=1e-10)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm1d(3)(vt.randn(1, 3))
    with pytest.raises(vt.ShapeError, match="num_features=3"):
        nn.BatchNorm2d(3)(vt.randn(2, 4, 2, 2))


@pytest.mark.parametrize("groups,affine", [(1, True), (2, True), (4, False)])
def test_group_norm(groups, affine):
    vm, tm = nn.GroupNorm(groups, 4, affine=affine), torch.nn.GroupNorm(groups, 4, affine=affine)
    if affine:
        with torch.no_grad():
            tm.weight.normal_()
            tm.bias.normal_()
    check_layer(vm, tm, rng.randn(3, 4, 5, 2), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("out", [1, 2, (3, 2), (None, 4)])
def test_adaptive_avg_pool2d(out):
    check_layer(nn.AdaptiveAvgPool2d(out), torch.nn.AdaptiveAvgPool2d(out), rng.randn(2, 3, 7, 4), rtol=1e-9)


def test_bce_losses():
    logits, tgt = rng.randn(5, 3), (rng.rand(5, 3) > 0.5).astype(np.float64)
    probs = 1 / (1 + np.exp(-logits))
    check_layer(nn.BCEWithLogitsLoss(), torch.nn.BCEWithLogitsLoss(), logits, tgt)
    pw = rng.rand(3) + 0.5
    check_layer(nn.BCEWithLogitsLoss(pos_weight=vt.tensor(pw), reduction="sum"),
                torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pw), reduction="sum"), logits, tgt)
    check_layer(nn.BCELoss(), torch.nn.BCELoss(), probs, tgt)


@pytest.mark.parametrize("vcls,tcls", [(nn.ELU, torch.nn.ELU), (nn.Mish, torch.nn.Mish),
                                       (nn.Hardswish, torch.nn.Hardswish), (nn.Hardsigmoid, torch.nn.Hardsigmoid)])
def test_extra_activations(vcls, tcls):
    x = rng.randn(4, 6) * 3
    check_layer(vcls(), tcls(), x, rtol=1e-8, atol=1e-10)


def test_small_cnn_matches_torch():
    def build(m):
        return m.Sequential(m.Conv2d(3, 8, 3, padding=1), m.BatchNorm2d(8), m.ReLU(), m.MaxPool2d(2),
                            m.Conv2d(8, 8, 3), m.GroupNorm(2, 8), m.SiLU(), m.AdaptiveAvgPool2d(1), m.Flatten(),
                            m.Linear(8, 4))
    check_layer(build(nn), build(torch.nn), rng.randn(2, 3, 8, 8), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("norm_first,activation,batch_first", [(False, "relu", False), (True, "gelu", True)])
def test_transformer_encoder_matches_torch(norm_first, activation, batch_first):
    kw = dict(dim_feedforward=32, dropout=0.0, activation=activation, batch_first=batch_first, norm_first=norm_first)
    vm = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 4, **kw), 2, norm=nn.LayerNorm(16))
    tm = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(16, 4, **kw), 2, norm=torch.nn.LayerNorm(16),
                                     enable_nested_tensor=False)
    assert list(vm.state_dict()) == list(tm.state_dict())
    x = rng.randn(3, 5, 16)
    mask = torch.nn.Transformer.generate_square_subsequent_mask(5 if batch_first else 3).numpy()
    check_layer(vm, tm, x, rtol=1e-8, atol=1e-10)
    copy = {k: vt.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()}
    vm.load_state_dict(copy)
    vo = vm(vt.tensor(x), mask=vt.tensor(mask), is_causal=True)
    to = tm(torch.tensor(x), mask=torch.tensor(mask), is_causal=True)
    np.testing.assert_allclose(vo.detach().numpy(), to.detach().numpy(), rtol=1e-8, atol=1e-10)
