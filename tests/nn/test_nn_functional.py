"""nn.functional: argument handling and the functions written here (pad, normalize), against torch."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import vibetensor as vt
import vibetensor.nn.functional as F

rng = np.random.RandomState(0)


def both(a, grad=True):
    return vt.tensor(a, requires_grad=grad), torch.tensor(a, requires_grad=grad)


def close(v, t, rtol=1e-10, atol=1e-12):
    np.testing.assert_allclose(v.detach().numpy(), t.detach().numpy(), rtol=rtol, atol=atol)


def test_every_listed_function_exists():
    for name in ["linear", "relu", "gelu", "silu", "softplus", "sigmoid", "tanh", "softmax", "log_softmax",
                 "layer_norm", "rms_norm", "embedding", "dropout", "cross_entropy", "nll_loss", "mse_loss",
                 "scaled_dot_product_attention", "conv2d", "max_pool2d", "avg_pool2d", "one_hot", "pad", "normalize"]:
        assert callable(getattr(F, name)) and name in F.__all__, name


@pytest.mark.parametrize("pad,value", [((1, 2), 0.0), ((0, 1, 2, 0), -3.5), ((1, 1, 1, 1, 1, 1), 2.0),
                                       ((-1, 2), 0.0), ((2, -2, 0, 1), 1.0)])
def test_pad_constant(pad, value):
    x = rng.randn(2, 3, 4)
    vx, tx = both(x)
    vo, to = F.pad(vx, pad, value=value), TF.pad(tx, pad, value=value)
    close(vo, to)
    up = rng.randn(*to.shape)
    (vo * vt.tensor(up)).sum().backward()
    (to * torch.tensor(up)).sum().backward()
    close(vx.grad, tx.grad)


def test_pad_errors():
    x = vt.zeros(2, 2)
    with pytest.raises(NotImplementedError, match="reflect"):
        F.pad(x, (1, 1), mode="reflect")
    with pytest.raises(ValueError, match="even"):
        F.pad(x, (1, 1, 1))


@pytest.mark.parametrize("p,dim", [(2.0, 1), (1.0, -1), (3.0, 0)])
def test_normalize(p, dim):
    x = rng.randn(4, 5)
    x[1] = 0.0  # the eps floor
    vx, tx = both(x)
    vo, to = F.normalize(vx, p, dim), TF.normalize(tx, p, dim)
    close(vo, to)
    (vo * vt.tensor(x + 1)).sum().backward()
    (to * torch.tensor(x + 1)).sum().backward()
    close(vx.grad, tx.grad, rtol=1e-8, atol=1e-10)


def test_one_hot_and_softmax_default_dim():
    idx = np.array([[0, 3], [2, 1]])
    np.testing.assert_array_equal(F.one_hot(vt.tensor(idx), 5).numpy(), TF.one_hot(torch.tensor(idx), 5).numpy())
    with pytest.raises(TypeError, match="integer"):
        F.one_hot(vt.zeros(3), 4)
    x = rng.randn(2, 3, 4)
    with pytest.warns(UserWarning):
        ref = TF.softmax(torch.tensor(x)).numpy()  # torch's implicit dim for 3-d input is 0
    np.testing.assert_allclose(F.softmax(vt.tensor(x)).numpy(), ref, rtol=1e-10)
    close(F.log_softmax(vt.tensor(x), 1, dtype=vt.float32), TF.log_softmax(torch.tensor(x), 1, dtype=torch.float32),
          rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["none", "causal", "float", "bool"])
def test_sdpa(kind):
    q, k, v = rng.randn(2, 3, 5, 4), rng.randn(2, 3, 6, 4), rng.randn(2, 3, 6, 4)
    mask = None
    if kind == "float":
        mask = rng.randn(5, 6)
    elif kind == "bool":
        mask = rng.rand(2, 1, 5, 6) > 0.3
        mask[..., 0] = True
    kw = {"is_causal": kind == "causal"}
    vo = F.scaled_dot_product_attention(vt.tensor(q), vt.tensor(k), vt.tensor(v),
                                        None if mask is None else vt.tensor(mask), **kw)
    to = TF.scaled_dot_product_attention(torch.tensor(q), torch.tensor(k), torch.tensor(v),
                                         None if mask is None else torch.tensor(mask), **kw)
    close(vo, to, rtol=1e-9, atol=1e-11)
    with pytest.raises(ValueError, match="either attn_mask or is_causal"):
        F.scaled_dot_product_attention(vt.tensor(q), vt.tensor(k), vt.tensor(v), vt.tensor(rng.randn(5, 6)),
                                       is_causal=True)


def test_activation_and_loss_wrappers_match_torch():
    x = rng.randn(4, 5)
    t = torch.tensor(x)
    for vf, tf in [(F.relu, TF.relu), (F.silu, TF.silu), (F.sigmoid, torch.sigmoid), (F.tanh, torch.tanh),
                   (F.gelu, TF.gelu), (lambda a: F.gelu(a, approximate="tanh"), lambda a: TF.gelu(a, approximate="tanh")),
                   (lambda a: F.softplus(a, 2.0, 1.0), lambda a: TF.softplus(a, 2.0, 1.0)),
                   (lambda a: F.leaky_relu(a, 0.1), lambda a: TF.leaky_relu(a, 0.1)),
                   (lambda a: F.layer_norm(a, (5,)), lambda a: TF.layer_norm(a, (5,))),
                   (lambda a: F.rms_norm(a, [5], eps=1e-6), lambda a: TF.rms_norm(a, [5], eps=1e-6))]:
        close(vf(vt.tensor(x)), tf(t), rtol=1e-9, atol=1e-11)
    tgt = np.array([1, 0, 4, 2])
    close(F.cross_entropy(vt.tensor(x), vt.tensor(tgt), label_smoothing=0.2, reduction="none"),
          TF.cross_entropy(t, torch.tensor(tgt), label_smoothing=0.2, reduction="none"))
    close(F.nll_loss(F.log_softmax(vt.tensor(x), 1), vt.tensor(tgt), ignore_index=4),
          TF.nll_loss(TF.log_softmax(t, 1), torch.tensor(tgt), ignore_index=4))
    close(F.mse_loss(vt.tensor(x), vt.tensor(x * 0.5), reduction="sum"), TF.mse_loss(t, t * 0.5, reduction="sum"))


def test_argument_errors():
    x = vt.randn(2, 3)
    with pytest.raises(ValueError, match="approximate"):
        F.gelu(x, approximate="fast")
    with pytest.raises(vt.ShapeError, match="normalized_shape"):
        F.layer_norm(x, (4,))
    with pytest.raises(TypeError, match="integer"):
        F.embedding(vt.zeros(2), vt.randn(3, 2))
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.dropout(x, 1.5)
    with pytest.raises(NotImplementedError, match="size_average"):
        F.mse_loss(x, x, size_average=True)
    np.testing.assert_array_equal(F.dropout(x, 0.5, training=False).numpy(), x.numpy())
