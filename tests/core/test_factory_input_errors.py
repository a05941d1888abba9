"""Bad input to factories, size arguments and generators: PyTorch's error classes, our messages with the values;
and the valid inputs next to them (numpy ints, 0-d int tensors, empty and zero sizes) still work."""
import math

import numpy as np
import pytest

import vibetensor as vt
from vibetensor.errors import DTypeError, ShapeError



# ---------------------------------------------------------------- size arguments: ints only, never int()
@pytest.mark.parametrize("fn", [vt.zeros, vt.ones, vt.empty, vt.rand, vt.randn])
@pytest.mark.parametrize("bad", [2.5, "12", None, True, (2, 3.7), [2, "3"], ((2,), (3,)), np.float64(3.0),
                                 np.array([2, 3])])
def test_factory_size_rejects_non_ints(fn, bad):
    args = bad if isinstance(bad, tuple) and len(bad) == 2 and isinstance(bad[0], tuple) else (bad,)
    with pytest.raises(TypeError, match=rf"{fn.__name__}\(\): size must be a tuple of ints, got "):
        fn(*args)


def test_size_error_names_value_type_and_position():
    with pytest.raises(TypeError, match=r"zeros\(\): size must be a tuple of ints, got 2\.5 \(float\)"):
        vt.zeros(2.5)
    with pytest.raises(TypeError, match=r"got 3\.7 \(float\) at position 1 of \(2, 3\.7\)"):
        vt.zeros((2, 3.7))
    with pytest.raises(TypeError, match=r"got None \(NoneType\)"):
        vt.zeros(None)
    with pytest.raises(TypeError, match=r"got '12' \(str\)"):
        vt.ones("12")


def test_size_rejects_float_tensor_and_bool_tensor():
    with pytest.raises(TypeError, match=r"got tensor\(3\.\) \(Tensor\)"):
        vt.zeros(vt.tensor(3.0))
    with pytest.raises(TypeError, match="size must be a tuple of ints"):
        vt.zeros(vt.tensor(True))


@pytest.mark.parametrize("size,shape", [
    ((np.int64(3), 2), (3, 2)), ((np.int32(3),), (3,)), ((np.array(3),), (3,)), ((vt.tensor(3), 2), (3, 2)),
    (((vt.tensor(3), np.int8(2)),), (3, 2)), (((),), ()), (([],), ()), ((0, 3), (0, 3)), ((0,), (0,)),
    ((vt.Size([2, 3]),), (2, 3)), (([2, 3],), (2, 3)), ((1,) * 6, (1,) * 6)])
def test_factory_size_valid_forms(size, shape):
    for fn in (vt.zeros, vt.ones, vt.empty, vt.rand, vt.randn):
        out = fn(*size)
        assert tuple(out.shape) == shape and all(type(s) is int for s in out.shape)
    assert tuple(vt.full(size[0] if len(size) == 1 else size, 7).shape) == shape


@pytest.mark.parametrize("fn", [vt.zeros, vt.ones, vt.empty, vt.rand, vt.randn])
def test_negative_size_is_shape_error(fn):
    with pytest.raises(ShapeError, match=r"negative dimension in size \(2, -1\)"):
        fn(2, -1)


def test_too_big_names_shape_and_bytes():
    with pytest.raises(ShapeError, match=r"zeros\(\): shape \(1000000000000, 1000000000000\) of float32 needs "
                                         r"4e\+24 bytes"):
        vt.zeros(10 ** 12, 10 ** 12)
    with pytest.raises(ShapeError, match=r"randn\(\): shape .* of float64 needs"):
        vt.randn(10 ** 12, 10 ** 12, dtype=vt.float64)
    with pytest.raises(ShapeError, match=r"full\(\): shape \(1180591620717411303424,\)"):
        vt.full((2 ** 70,), 1.0)


def test_tensor_methods_reject_non_int_sizes():
    t = vt.arange(12)
    with pytest.raises(TypeError, match=r"reshape\(\): shape must be a tuple of ints, got 2\.5 \(float\) "
                                        r"at position 0 of \(2\.5, 2\.4\)"):
        t.reshape(2.5, 2.4)
    with pytest.raises(TypeError, match=r"view\(\): shape must be a tuple of ints, got None"):
        t.view(None)
    with pytest.raises(TypeError, match=r"permute\(\): dims must be a tuple of ints, got 0\.5"):
        t.permute(0.5)
    with pytest.raises(TypeError, match=r"new_zeros\(\): size must be a tuple of ints, got 2\.5"):
        t.new_zeros(2.5)
    with pytest.raises(TypeError, match=r"expand\(\): size must be a tuple of ints"):
        t.expand(2.0, 12)


def test_tensor_methods_accept_index_like_sizes():
    t = vt.arange(12)
    assert tuple(t.reshape(np.int64(3), 4).shape) == (3, 4)
    assert tuple(t.reshape(vt.tensor(3), -1).shape) == (3, 4)
    assert tuple(t.view((np.int32(2), 6)).shape) == (2, 6)
    assert tuple(t.reshape(2, 6).shape) == (2, 6)
    np.testing.assert_array_equal(t.reshape([3, 4]).numpy(), np.arange(12).reshape(3, 4))


# ---------------------------------------------------------------- random factories
def test_randint_range_must_fit_dtype():
    with pytest.raises(ValueError, match=r"randint\(\): the range \[0, 1000\) does not fit uint8, which holds "
                                         r"0\.\.255"):
        vt.randint(0, 1000, (4,), dtype=vt.uint8)
    with pytest.raises(ValueError, match=r"does not fit uint8"):
        vt.randint(-1, 5, (4,), dtype=vt.uint8)
    with pytest.raises(ValueError, match=r"does not fit int8"):
        vt.randint(-129, 5, (4,), dtype=vt.int8)
    with pytest.raises(ValueError, match=r"the range \[0, 3\) does not fit bool"):
        vt.randint(0, 3, (4,), dtype=vt.bool)


def test_randint_valid_edges():
    a = vt.randint(0, 256, (1000,), dtype=vt.uint8)
    assert a.dtype == vt.uint8 and int(a.max()) <= 255
    b = vt.randint(-128, 128, (1000,), dtype=vt.int8)
    assert b.dtype == vt.int8 and int(b.min()) >= -128
    c = vt.randint(0, 2, (50,), dtype=vt.bool)  # PyTorch allows bool for [0, 2)
    assert c.dtype == vt.bool and set(np.unique(c.numpy()).tolist()) <= {False, True}
    assert vt.randint(np.int64(0), np.int64(3), (4,)).dtype == vt.int64
    assert int(vt.randint(vt.tensor(3), size=(100,)).max()) <= 2
    d = vt.randint(10, (3, 2))  # randint(high, size), as PyTorch
    assert tuple(d.shape) == (3, 2) and 0 <= int(d.min()) and int(d.max()) < 10
    assert tuple(vt.randint(0, 3, (0, 2)).shape) == (0, 2)


@pytest.mark.parametrize("low,high,arg", [(0.5, 3.5, "low"), (0, 3.5, "high"), (True, 3, "low"), ("0", 3, "low")])
def test_randint_rejects_non_int_bounds(low, high, arg):
    with pytest.raises(TypeError, match=rf"randint\(\): {arg} must be an int, got "):
        vt.randint(low, high, (4,))


def test_randint_size_checked():
    with pytest.raises(TypeError, match=r"randint\(\): size must be a tuple of ints, got 2\.5"):
        vt.randint(0, 3, (2.5,))
    with pytest.raises(ShapeError, match=r"randint\(\): negative dimension"):
        vt.randint(0, 3, (-1,))


def test_randperm_bad_n_and_dtype():
    with pytest.raises(ValueError, match=r"randperm\(\): n must be non-negative, got -1"):
        vt.randperm(-1)
    with pytest.raises(TypeError, match=r"randperm\(\): n must be an int, got 3\.5 \(float\)"):
        vt.randperm(3.5)
    with pytest.raises(TypeError, match=r"randperm\(\): n must be an int, got True"):
        vt.randperm(True)
    with pytest.raises(ValueError, match=r"n=300 is too large for uint8"):
        vt.randperm(300, dtype=vt.uint8)
    with pytest.raises(ValueError, match=r"n=129 is too large for int8"):
        vt.randperm(129, dtype=vt.int8)
    with pytest.raises(ValueError, match=r"too large for float16"):
        vt.randperm(5000, dtype=vt.float16)
    with pytest.raises(DTypeError, match=r"dtype bool is not supported"):
        vt.randperm(3, dtype=vt.bool)


def test_randperm_valid():
    assert vt.randperm(0).numel() == 0
    assert sorted(vt.randperm(np.int64(5)).tolist()) == [0, 1, 2, 3, 4]
    assert sorted(vt.randperm(vt.tensor(4)).tolist()) == [0, 1, 2, 3]
    assert sorted(vt.randperm(256, dtype=vt.uint8).tolist()) == list(range(256))
    assert sorted(vt.randperm(128, dtype=vt.int8).tolist()) == list(range(128))


def test_generator_must_be_a_generator():
    with pytest.raises(TypeError, match=r"generator must be a vt\.Generator, got int"):
        vt.randn(2, generator=5)
    with pytest.raises(TypeError, match=r"generator must be a vt\.Generator"):
        vt.randint(0, 3, (2,), generator="seed")
    g = vt.Generator().manual_seed(1)
    a = vt.randn(3, generator=g)
    np.testing.assert_array_equal(a.numpy(), vt.randn(3, generator=vt.Generator().manual_seed(1)).numpy())


def test_generator_state_round_trip_and_garbage():
    g = vt.Generator().manual_seed(3)
    vt.randn(5, generator=g)
    st = g.get_state()
    a = vt.randn(4, generator=g)
    b = vt.randn(4, generator=vt.Generator().set_state(st))
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    for bad in (vt.tensor([1, 2, 3], dtype=vt.uint8), b"{}", b'{"bit_generator": "PCG64"}',
                np.frombuffer(b'{"bit_generator": "Philox", "state": 5}', np.uint8)):
        with pytest.raises(ValueError, match=r"Generator\.set_state: the state is not one saved by "
                                             r"Generator\.get_state\(\)"):
            vt.Generator().set_state(bad)
    for bad in ("abc", None, 5):
        with pytest.raises(TypeError, match=r"Generator\.set_state: expected the uint8 tensor"):
            vt.Generator().set_state(bad)


# ---------------------------------------------------------------- eye, linspace, arange, full
def test_eye_bad_args():
    with pytest.raises(ValueError, match=r"eye\(\): n and m must be greater or equal to 0, got n=-1"):
        vt.eye(-1)
    with pytest.raises(ValueError, match=r"got n=2, m=-1"):
        vt.eye(2, -1)
    with pytest.raises(TypeError, match=r"eye\(\): n must be an int, got 2\.5 \(float\)"):
        vt.eye(2.5)
    with pytest.raises(TypeError, match=r"eye\(\): m must be an int, got 2\.5"):
        vt.eye(2, 2.5)
    assert tuple(vt.eye(0).shape) == (0, 0)
    np.testing.assert_array_equal(vt.eye(np.int64(2), vt.tensor(3)).numpy(), np.eye(2, 3))


def test_linspace_logspace_bad_steps():
    with pytest.raises(TypeError, match=r"linspace\(\): steps must be an int, got 2\.5 \(float\)"):
        vt.linspace(0, 1, 2.5)
    with pytest.raises(TypeError, match=r"linspace\(\): steps must be an int, got None"):
        vt.linspace(0, 1, None)
    with pytest.raises(TypeError, match=r"linspace\(\): start must be a real number, got 'a'"):
        vt.linspace("a", 1, 3)
    with pytest.raises(TypeError, match=r"logspace\(\): steps must be an int"):
        vt.logspace(0, 1, 2.5)
    np.testing.assert_allclose(vt.linspace(0, 1, np.int64(3)).numpy(), [0, 0.5, 1])
    assert vt.linspace(0, 1, 0).numel() == 0


def test_arange_bad_ranges():
    with pytest.raises(ValueError, match=r"arange\(\): unsupported range: 0 -> inf"):
        vt.arange(0, math.inf)
    with pytest.raises(ValueError, match=r"unsupported range: 0 -> nan"):
        vt.arange(0, math.nan)
    with pytest.raises(ValueError, match=r"upper bound and lower bound inconsistent with step sign"):
        vt.arange(5, 0, 1)
    with pytest.raises(ValueError, match=r"inconsistent with step sign: start=0, end=5, step=-1"):
        vt.arange(0, 5, -1)
    with pytest.raises(TypeError, match=r"arange\(\): end must be a real number, got 'a' \(str\)"):
        vt.arange("a")
    with pytest.raises(ShapeError, match=r"arange\(\): shape \(100000000000000000000,\)"):
        vt.arange(0, 1e20, 1)


def test_arange_valid_edges():
    assert vt.arange(5, 5).numel() == 0
    assert vt.arange(0, 5, -1 + 2).tolist() == [0, 1, 2, 3, 4]
    assert vt.arange(0, -5, -2).tolist() == [0, -2, -4]
    a = vt.arange(np.int64(3))
    assert a.dtype == vt.int64 and a.tolist() == [0, 1, 2]
    assert vt.arange(vt.tensor(3)).tolist() == [0, 1, 2]


@pytest.mark.parametrize("bad", ["a", None, [1], 1 + 2j, vt.ones(2)])
def test_full_rejects_non_numbers(bad):
    with pytest.raises(TypeError, match=r"full\(\): fill_value must be a real number or bool, got "):
        vt.full((2,), bad)


def test_full_valid_fill_and_size_forms():
    assert vt.full((2,), vt.tensor(2.0)).tolist() == [2.0, 2.0]
    assert vt.full((2,), np.float32(1.5)).tolist() == [1.5, 1.5]
    assert vt.full((2,), True).dtype == vt.bool
    assert tuple(vt.full([2, 3], 1).shape) == (2, 3)
    assert tuple(vt.full(2, 1).shape) == (2,)
    with pytest.raises(TypeError, match=r"full\(\): size must be a tuple of ints, got 2\.5"):
        vt.full(2.5, 1)


# ---------------------------------------------------------------- tensor(), *_like
@pytest.mark.parametrize("data,where", [
    ([[1, 2], [3]], r"expected a sequence of length 2 at data\[1\] \(dim 1\), got length 1"),
    ([[[1, 2], [3, 4]], [[1, 2], [3]]], r"at data\[1\]\[1\] \(dim 2\), got length 1"),
    ([1, [2]], r"expected a number at data\[1\] \(dim 1\), got a sequence of length 1"),
    ([[1], 2], r"expected a sequence of length 1 at data\[1\] \(dim 1\), got a number"),
])
def test_tensor_ragged_says_where(data, where):
    with pytest.raises(ShapeError, match=r"vt\.tensor: nested sequences have unequal lengths: .*" + where):
        vt.tensor(data)
    with pytest.raises(ShapeError, match=where):
        vt.tensor(data, dtype=vt.float32)


def test_tensor_ragged_tensors_and_arrays():
    with pytest.raises(ShapeError, match=r"unequal lengths: expected a sequence of length 2 at data\[1\] "
                                         r"\(dim 1\), got length 3"):
        vt.tensor([vt.ones(2), vt.ones(3)])
    with pytest.raises(ShapeError, match=r"at data\[1\]\[0\] \(dim 2\), got length 3"):
        vt.tensor([np.ones((2, 2)), np.ones((2, 3))])
    assert tuple(vt.tensor([vt.ones(2), vt.ones(2)]).shape) == (2, 2)
    assert tuple(vt.tensor([[], []]).shape) == (2, 0)


def test_tensor_other_value_errors_unchanged():
    with pytest.raises(ValueError, match="could not convert string to float"):
        vt.tensor(["a"], dtype=vt.float32)


@pytest.mark.parametrize("fn,args", [(vt.zeros_like, ()), (vt.ones_like, ()), (vt.empty_like, ()),
                                     (vt.full_like, (1.0,)), (vt.rand_like, ()), (vt.randn_like, ()),
                                     (vt.randint_like, (3,))])
def test_like_requires_a_tensor(fn, args):
    with pytest.raises(TypeError, match=rf"{fn.__name__}\(\): input must be a vt\.Tensor, got \[1, 2\] \(list\)"):
        fn([1, 2], *args)
    t = vt.ones(2, 3)
    assert tuple(fn(t, *args).shape) == (2, 3)
