"""In-place writes and autograd, against PyTorch: writing through .data / .detach() (weight init), and
zero_/fill_/copy_/random fills on tensors autograd tracks (the value gets the gradient, the old history zeros)."""
import numpy as np
import pytest

import vibetensor as vt

torch = pytest.importorskip("torch")


def test_weight_init_through_data_and_detach():
    lin, tlin = vt.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    for m in (lin, tlin):
        m.weight.data.fill_(0.5)
        m.bias.detach().zero_()
        m.weight.data[0, 1] = 2.0
    assert np.array_equal(lin.weight.detach().numpy(), tlin.weight.detach().numpy())
    assert lin.bias.tolist() == [0.0, 0.0] and lin.weight.is_leaf and lin.weight.requires_grad
    with pytest.raises(vt.errors.AutogradError, match="a view of a leaf tensor that requires grad"):
        lin.weight[0].add_(1)  # a view autograd tracks still may not be written


def _both(fn):
    """fn(lib, x, w) builds a loss from x (2,) and w (2,), both requiring grad: (loss, x.grad, w.grad) per side."""
    out = []
    for lib in (vt, torch):
        x = lib.tensor([1.0, -2.0], requires_grad=True)
        w = lib.tensor([5.0, 6.0], requires_grad=True)
        loss = fn(lib, x, w)
        loss.backward()
        grads = [None if t.grad is None else np.asarray(t.grad.tolist()) for t in (x, w)]
        out.append((float(loss.item()), *grads))
    return out


@pytest.mark.parametrize("name,fn", [
    ("copy_", lambda lib, x, w: ((x * 2).copy_(w) * x).sum()),
    ("copy_ broadcast", lambda lib, x, w: (x * 2).copy_(w[1:]).pow(2).sum()),
    ("copy_ into a constant", lambda lib, x, w: (lib.zeros(2).copy_(w) * w).sum()),
    ("zero_", lambda lib, x, w: ((x * 2).zero_() + x * w).sum()),
    ("fill_ number", lambda lib, x, w: ((x * 3).fill_(1.5) * w).sum()),
    ("fill_ tensor", lambda lib, x, w: ((x * 3).fill_(w[0]) * x).sum()),
])
def test_fills_under_autograd_match_torch(name, fn):
    (lv, *gv), (lt, *gt) = _both(fn)
    assert lv == pytest.approx(lt)
    for a, b in zip(gv, gt):
        assert (a is None) == (b is None), name
        if a is not None:
            assert np.allclose(a, b), (name, a, b)


def test_random_fill_of_a_tracked_tensor_cuts_its_history():
    x = vt.tensor([1.0, 2.0], requires_grad=True)
    y = (x * 2).normal_()
    (y * x).sum().backward()
    assert np.allclose(x.grad.numpy(), y.detach().numpy())  # only the product's own term


def test_fill_of_a_tracked_view_is_refused_clearly():
    w = vt.tensor([5.0, 6.0], requires_grad=True)
    with pytest.raises(NotImplementedError, match="copy_ on a view that takes part in autograd"):
        vt.zeros(2, 2)[0].copy_(w)
