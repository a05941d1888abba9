"""Each layer against torch's layer holding the same weights: forward output and parameter/input gradients."""
import numpy as np
import pytest
import torch

import vibetensor as vt
from vibetensor import nn


def vt_from(t):
    return vt.tensor(t.detach().numpy())


def copy_weights(vm, tm):
    """torch state_dict -> vt module, through load_state_dict (strict)."""
    vm.load_state_dict({k: vt_from(v) for k, v in tm.state_dict().items()})


def check_layer(vm, tm, *inputs, rtol=1e-9, atol=1e-10, grad=True, out_index=None):
    """inputs: numpy arrays; float ones require grad. Compares outputs, input grads and param grads."""
    copy_weights(vm, tm)
    vins, tins = [], []
    for a in inputs:
        if isinstance(a, np.ndarray) and a.dtype.kind == "f" and grad and np.isfinite(a).all():
            vins.append(vt.tensor(a, requires_grad=True))
            tins.append(torch.tensor(a, requires_grad=True))
        elif isinstance(a, np.ndarray):
            vins.append(vt.tensor(a))
            tins.append(torch.tensor(a))
        else:
            vins.append(a)
            tins.append(a)
    vo, to = vm(*vins), tm(*tins)
    if out_index is not None:
        vo, to = vo[out_index], to[out_index]
    np.testing.assert_allclose(vo.detach().numpy(), to.detach().numpy(), rtol=rtol, atol=atol)
    if not grad:
        return
    up = np.random.RandomState(1).randn(*to.shape)
    (vo * vt.tensor(up)).sum().backward()
    (to * torch.tensor(up)).sum().backward()
    for v, t in zip(vins, tins):
        if isinstance(t, torch.Tensor) and t.requires_grad:
            np.testing.assert_allclose(v.grad.numpy(), t.grad.numpy(), rtol=1e-7, atol=1e-9)
    tp = dict(tm.named_parameters())
    for name, p in vm.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), tp[name].grad.numpy(), rtol=1e-7, atol=1e-9, err_msg=name)


@pytest.fixture(autouse=True)
def _f64():
    torch.manual_seed(0)
    vt.set_default_dtype(vt.float64)
    torch.set_default_dtype(torch.float64)
    yield
    vt.set_default_dtype(vt.float32)
    torch.set_default_dtype(torch.float32)


rng = np.random.RandomState(0)


@pytest.mark.parametrize("bias", [True, False])
def test_linear(bias):
    check_layer(nn.Linear(5, 3, bias=bias), torch.nn.Linear(5, 3, bias=bias), rng.randn(2, 4, 5))


def test_embedding_padding_idx():
    vm, tm = nn.Embedding(7, 4, padding_idx=2), torch.nn.Embedding(7, 4, padding_idx=2)
    assert float(vm.weight[2].abs().sum()) == 0.0
    idx = np.array([[0, 2, 5], [2, 2, 6]])
    check_layer(vm, tm, idx)
    assert float(vm.weight.grad[2].abs().sum()) == 0.0


@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm(affine):
    check_layer(nn.LayerNorm((3, 4), elementwise_affine=affine), torch.nn.LayerNorm((3, 4), elementwise_affine=affine),
                rng.randn(2, 3, 4), rtol=1e-8, atol=1e-9)


def test_layer_norm_trained_affine():
    vm, tm = nn.LayerNorm(6), torch.nn.LayerNorm(6)
    with torch.no_grad():
        tm.weight.normal_()
        tm.bias.normal_()
    check_layer(vm, tm, rng.randn(3, 6), rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("eps", [None, 1e-5])
def test_rms_norm(eps):
    vm, tm = nn.RMSNorm(6, eps=eps), torch.nn.RMSNorm(6, eps=eps)
    with torch.no_grad():
        tm.weight.normal_()
    check_layer(vm, tm, rng.randn(2, 3, 6), rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("vcls,tcls,kw", [
    (nn.ReLU, torch.nn.ReLU, {}), (nn.GELU, torch.nn.GELU, {}), (nn.GELU, torch.nn.GELU, {"approximate": "tanh"}),
    (nn.SiLU, torch.nn.SiLU, {}), (nn.Tanh, torch.nn.Tanh, {}), (nn.Sigmoid, torch.nn.Sigmoid, {}),
    (nn.Identity, torch.nn.Identity, {}), (nn.Softplus, torch.nn.Softplus, {"beta": 2.0}),
    (nn.LeakyReLU, torch.nn.LeakyReLU, {"negative_slope": 0.2}), (nn.Softmax, torch.nn.Softmax, {"dim": -1}),
    (nn.LogSoftmax, torch.nn.LogSoftmax, {"dim": 1}),
])
def test_activations(vcls, tcls, kw):
    x = rng.randn(3, 5)
    x[0, 0] = 0.25  # keep away from relu's kink at exactly 0
    check_layer(vcls(**kw), tcls(**kw), x, rtol=1e-8, atol=1e-10)


def test_flatten():
    check_layer(nn.Flatten(), torch.nn.Flatten(), rng.randn(2, 3, 4))
    check_layer(nn.Flatten(0, 1), torch.nn.Flatten(0, 1), rng.randn(2, 3, 4))


def test_dropout_train_and_eval():
    d = nn.Dropout(0.25)
    x = vt.ones(4000)
    y = d(x).numpy()
    kept = y != 0
    assert 0.70 < kept.mean() < 0.80  # Binomial(4000, 0.75): 5 sigma is ~0.034
    np.testing.assert_allclose(y[kept], 1 / 0.75)
    d.eval()
    np.testing.assert_array_equal(d(x).numpy(), x.numpy())
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)


@pytest.mark.parametrize("kw", [
    {}, {"stride": 2, "padding": 1}, {"padding": "same", "dilation": 2}, {"groups": 2, "bias": False},
    {"stride": (2, 1), "padding": (0, 2)},
])
def test_conv2d(kw):
    check_layer(nn.Conv2d(4, 6, 3, **kw), torch.nn.Conv2d(4, 6, 3, **kw), rng.randn(2, 4, 7, 6),
                rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("kw", [{"kernel_size": 2}, {"kernel_size": 3, "stride": 2, "padding": 1},
                                {"kernel_size": 2, "ceil_mode": True}])
def test_pools(kw):
    x = rng.randn(2, 3, 7, 6)
    check_layer(nn.MaxPool2d(**kw), torch.nn.MaxPool2d(**kw), x)
    check_layer(nn.AvgPool2d(**kw), torch.nn.AvgPool2d(**kw), x)


def test_losses():
    logits, tgt = rng.randn(6, 5), np.array([0, 4, 2, -100, 1, 3])
    check_layer(nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss(), logits, tgt)
    check_layer(nn.CrossEntropyLoss(label_smoothing=0.1, reduction="sum"),
                torch.nn.CrossEntropyLoss(label_smoothing=0.1, reduction="sum"), logits, np.abs(tgt) % 5)
    w = rng.rand(5) + 0.5
    check_layer(nn.CrossEntropyLoss(weight=vt.tensor(w)), torch.nn.CrossEntropyLoss(weight=torch.tensor(w)),
                logits, np.abs(tgt) % 5)
    check_layer(nn.NLLLoss(), torch.nn.NLLLoss(), logits, tgt)
    check_layer(nn.MSELoss(), torch.nn.MSELoss(), rng.randn(4, 3), rng.randn(4, 3))
    check_layer(nn.MSELoss(reduction="none"), torch.nn.MSELoss(reduction="none"), rng.randn(4, 3), rng.randn(4, 3))
    check_layer(nn.L1Loss(), torch.nn.L1Loss(), rng.randn(4, 3), rng.randn(4, 3))
    with pytest.raises(ValueError, match="reduction"):
        nn.MSELoss(reduction="avg")


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("need_weights,average", [(True, True), (True, False), (False, True)])
def test_multihead_attention_self(batch_first, need_weights, average):
    vm = nn.MultiheadAttention(8, 2, batch_first=batch_first)
    tm = torch.nn.MultiheadAttention(8, 2, batch_first=batch_first)
    x = rng.randn(3, 5, 8)
    vx, tx = vt.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    copy_weights(vm, tm)
    vo, vw = vm(vx, vx, vx, need_weights=need_weights, average_attn_weights=average)
    to, tw = tm(tx, tx, tx, need_weights=need_weights, average_attn_weights=average)
    np.testing.assert_allclose(vo.detach().numpy(), to.detach().numpy(), rtol=1e-8, atol=1e-10)
    if need_weights:
        np.testing.assert_allclose(vw.detach().numpy(), tw.detach().numpy(), rtol=1e-8, atol=1e-10)
    else:
        assert vw is None and tw is None
    vo.sum().backward()
    to.sum().backward()
    np.testing.assert_allclose(vx.grad.numpy(), tx.grad.numpy(), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(vm.in_proj_weight.grad.numpy(), tm.in_proj_weight.grad.numpy(), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("need_weights", [True, False])
def test_multihead_attention_masks(need_weights):
    vm = nn.MultiheadAttention(8, 4, batch_first=True)
    tm = torch.nn.MultiheadAttention(8, 4, batch_first=True)
    q, kv = rng.randn(2, 4, 8), rng.randn(2, 6, 8)
    kpm = np.zeros((2, 6), bool)
    kpm[1, 4:] = True
    am = rng.randn(4, 6)
    causal_bool = np.triu(np.ones((4, 6), bool), 1)
    kpm_float = np.where(kpm, -np.inf, 0.0)  # torch wants both masks of one kind
    for key_mask, attn_mask in ((kpm_float, am), (kpm, causal_bool)):
        check_layer(vm, tm, q, kv, kv, key_mask, need_weights, attn_mask, rtol=1e-8, atol=1e-10, grad=False,
                    out_index=0)
    # is_causal with no mask is causal attention (torch needs the mask passed as well)
    vo, _ = vm(vt.tensor(q), vt.tensor(q), vt.tensor(q), need_weights=need_weights, is_causal=True)
    cm = torch.nn.Transformer.generate_square_subsequent_mask(4)
    to, _ = tm(*(torch.tensor(q),) * 3, need_weights=need_weights, attn_mask=cm, is_causal=True)
    np.testing.assert_allclose(vo.detach().numpy(), to.detach().numpy(), rtol=1e-8, atol=1e-10)


def test_multihead_attention_kdim_unbatched_and_errors():
    vm = nn.MultiheadAttention(8, 2, kdim=5, vdim=3)
    tm = torch.nn.MultiheadAttention(8, 2, kdim=5, vdim=3)
    check_layer(vm, tm, rng.randn(4, 8), rng.randn(6, 5), rng.randn(6, 3), rtol=1e-8, atol=1e-10, grad=False,
                out_index=0)
    with pytest.raises(ValueError, match="divisible"):
        nn.MultiheadAttention(10, 3)


def test_sequential_model_matches_torch():
    vm = nn.Sequential(nn.Linear(6, 16), nn.GELU(), nn.LayerNorm(16), nn.Linear(16, 3))
    tm = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.GELU(), torch.nn.LayerNorm(16), torch.nn.Linear(16, 3))
    check_layer(vm, tm, rng.randn(5, 6), rtol=1e-8, atol=1e-10)


def test_default_init_matches_torch_distribution():
    """Linear/Conv2d: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias; Embedding N(0, 1); norms 1/0."""
    lin = nn.Linear(400, 300)
    w, b = lin.weight.detach().numpy(), lin.bias.detach().numpy()
    bound = 1 / np.sqrt(400)
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    assert abs(w.std() - bound / np.sqrt(3)) < 0.02 * bound  # uniform's std is bound/sqrt(3)
    conv = nn.Conv2d(8, 64, 5)
    cb = 1 / np.sqrt(8 * 25)
    cw = conv.weight.detach().numpy()
    assert np.abs(cw).max() <= cb and abs(cw.std() - cb / np.sqrt(3)) < 0.05 * cb
    assert np.abs(conv.bias.detach().numpy()).max() <= cb
    e = nn.Embedding(500, 64).weight.detach().numpy()
    assert abs(e.mean()) < 0.02 and abs(e.std() - 1) < 0.02
    ln = nn.LayerNorm(5)
    assert ln.weight.detach().numpy().tolist() == [1.0] * 5 and ln.bias.detach().numpy().tolist() == [0.0] * 5
    mha = nn.MultiheadAttention(16, 4)
    assert float(mha.in_proj_bias.abs().sum()) == 0.0 and float(mha.out_proj.bias.abs().sum()) == 0.0
    xb = np.sqrt(6 / (16 + 48))
    assert np.abs(mha.in_proj_weight.detach().numpy()).max() <= xb


def test_factory_kwargs_dtype():
    lin = nn.Linear(3, 2, dtype=vt.float32)
    assert lin.weight.dtype == vt.float32
    assert nn.Embedding(3, 2, dtype=vt.float16).weight.dtype == vt.float16
