"""PyTorch's keyword spellings of operands and dims (input=, other=, axis=) reach the ops."""
import numpy as np
import pytest

import vibetensor as vt

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("call", [
    lambda lib, x, y: lib.sum(input=x),
    lambda lib, x, y: x.add(other=y),
    lambda lib, x, y: lib.mul(x, other=y),
    lambda lib, x, y: lib.matmul(x, other=y.T),
    lambda lib, x, y: x.sum(axis=0),
    lambda lib, x, y: lib.mean(x, axis=1, keepdim=True),
    lambda lib, x, y: lib.cat([x, y], axis=1),
    lambda lib, x, y: x.amax(axis=-1),
])
def test_torch_keyword_spellings(call):
    a, b = np.random.RandomState(0).randn(2, 3), np.random.RandomState(1).randn(2, 3)
    got = call(vt, vt.tensor(a), vt.tensor(b))
    ref = call(torch, torch.tensor(a), torch.tensor(b))
    assert tuple(got.shape) == tuple(ref.shape) and np.allclose(got.numpy(), ref.numpy())


def test_dim_and_axis_together_is_an_error():
    with pytest.raises(TypeError, match="both dim= and its alias axis="):
        vt.ones(2, 3).sum(dim=0, axis=1)
