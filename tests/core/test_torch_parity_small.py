"""Small PyTorch behaviours: dtype inference from numpy scalars, t == None, bitwise operators with
promotion and shifts, Size slices."""
import numpy as np
import pytest

import vibetensor as vt

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("data", [np.float64(2.0), np.float32(2), np.int32(3), np.bool_(True), [np.int32(1)],
                                  [np.float64(1.0)], [[np.float32(1)]], [np.int64(1), 2.5], [np.float32(1), np.int32(2)], [1.0, 2.0], [1, 2], 2.5, True])
def test_tensor_dtype_inference_matches_torch(data):
    assert vt.tensor(data).dtype.name == str(torch.tensor(data).dtype).replace("torch.", "")


def test_compare_with_none():
    t = vt.ones(2)
    assert (t == None) is False and (t != None) is True  # noqa: E711


@pytest.mark.parametrize("op", ["__and__", "__or__", "__xor__", "__lshift__", "__rshift__"])
@pytest.mark.parametrize("a,b", [([True, False, True], [2, 3, 0]), ([5, 6, 7], [1, 2, 3]),
                                 ([True, False, True], [True, True, False]), ([4, 8, 16], 1)])
def test_bitwise_operators_match_torch(op, a, b):
    if op in ("__lshift__", "__rshift__") and a[0] is True:
        pytest.skip("shifts of bool tensors")
    va, ta = vt.tensor(a), torch.tensor(a)
    vb, tb = (vt.tensor(b), torch.tensor(b)) if isinstance(b, list) else (b, b)
    got, ref = getattr(va, op)(vb), getattr(ta, op)(tb)
    assert got.dtype.name == str(ref.dtype).replace("torch.", "") and got.tolist() == ref.tolist()
    assert (16 >> vt.tensor([1, 2])).tolist() == [8, 4]


def test_size_slices_are_sizes():
    s = vt.ones(2, 3, 4).shape
    assert type(s[1:]) is type(s) and s[1:] == (3, 4) and s[1:].numel() == 12 and s[0] == 2
    assert type(s + (5,)) is type(s) and s + (5,) == (2, 3, 4, 5)


@pytest.mark.parametrize("call", [lambda t, d: t.sum(dim=d), lambda t, d: t.mean((0, d)), lambda t, d: t.unsqueeze(d),
                                  lambda t, d: t.cumsum(d), lambda t, d: t.softmax(d)])
def test_dims_must_be_integers(call):
    t = vt.ones(2, 3)
    for bad in ("a", 0.5, 1.0):
        with pytest.raises(TypeError, match=r"dim must be an int, got"):
            call(t, bad)
    assert tuple(call(t, np.int64(1)).shape) == tuple(call(t, 1).shape) == tuple(call(t, vt.tensor(1)).shape)


@pytest.mark.parametrize("bad,err", [(-1, ValueError), (2.5, TypeError), ("4", TypeError)])
def test_linear_widths_are_checked(bad, err):
    with pytest.raises(err, match="Linear: in_features must be"):
        vt.nn.Linear(bad, 2)
    assert vt.nn.Linear(np.int64(3), 2).weight.shape == (2, 3)
