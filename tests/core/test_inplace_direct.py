"""The in-place fast path (core/inplace.py ``_direct``): add_/sub_/mul_/div_ on float tensors run one
numpy or CuPy ufunc into the tensor's storage. Results must be bit-identical to the out-of-place op, every case
it does not cover must take the general path (same errors as before), and overrides must win."""
import numpy as np
import pytest

import vibetensor as vt
from vibetensor.core import dispatcher as D
from vibetensor.library import Library

RNG = np.random.default_rng(11)


def _t(shape, dtype, device="cpu"):
    return vt.tensor(RNG.standard_normal(shape), dtype=dtype, device=device)


def _count_dispatch(monkeypatch):
    calls = []
    orig = D.run_backend

    def counting(op, args, kwargs, tensors=None):
        calls.append(op.name)
        return orig(op, args, kwargs, tensors)
    monkeypatch.setattr(D, "run_backend", counting)
    return calls


CASES = [
    ("add", lambda o: {}, lambda a, o: a + o),
    ("add", lambda o: {"alpha": -0.37}, lambda a, o: vt.add(a, o, alpha=-0.37)),
    ("sub", lambda o: {}, lambda a, o: a - o),
    ("sub", lambda o: {"alpha": 3}, lambda a, o: vt.sub(a, o, alpha=3)),
    ("mul", lambda o: {}, lambda a, o: a * o),
    ("div", lambda o: {}, lambda a, o: a / o),
]


@pytest.mark.parametrize("dtype", [vt.float32, vt.float64])
@pytest.mark.parametrize("name,kw,ref", CASES)
@pytest.mark.parametrize("other", ["same", "row", "scalar_f", "scalar_i", "self"])
def test_bit_identical_to_out_of_place_and_no_dispatch(monkeypatch, device, dtype, name, kw, ref, other):
    base = _t((5, 7), dtype, device)
    o = {"same": _t((5, 7), dtype, device), "row": _t((1, 7), dtype, device), "scalar_f": 0.731, "scalar_i": -3,
         "self": None}[other]
    want = ref(base, base if o is None else o).numpy()
    t = base.clone()
    data = t._data
    v0 = t._version
    calls = _count_dispatch(monkeypatch)
    getattr(t, name + "_")(t if o is None else o, **kw(o))
    if device == "cuda" and kw(o):   # CUDA takes alpha != 1 through the general path (see _direct)
        assert calls, f"{name}_ with {kw(o)} on CUDA should take the general path"
    else:
        assert calls == [], f"{name}_ went through the dispatcher: {calls}"
    assert t._data is data and t._version == v0 + 1
    got = t.numpy()
    assert got.dtype == want.dtype and np.array_equal(got, want, equal_nan=True)


@pytest.mark.gpu
def test_cuda_overlapping_views_take_the_general_path():
    b = _t((10,), vt.float32, "cuda")
    want = b[1:].numpy() + b[:-1].numpy()
    c = b.clone()
    c[1:].add_(c[:-1])           # overlapping: CuPy would read values it already wrote
    assert np.array_equal(c[1:].numpy(), want)
    a = _t((6, 8), vt.float32, "cuda")
    want = (a.t() * a.t()).numpy()
    t = a.clone().t()
    t.mul_(t)                    # the same storage, same positions: direct path, exact
    assert np.array_equal(t.numpy(), want)
    big = _t((1 << 20,), vt.float32, "cuda")   # the float4 kernel's size: still bit-identical
    o = _t((1 << 20,), vt.float32, "cuda")
    want = (big + o).numpy()
    big.add_(o)
    assert np.array_equal(big.numpy(), want)


def test_non_contiguous_and_overlapping_views_match_out_of_place():
    a = _t((6, 8), vt.float32)
    want = (a.t() * 2.5).numpy()
    t = a.clone().t()            # a transposed view: writes land in the base's storage
    t.mul_(2.5)
    assert np.array_equal(t.numpy(), want)
    b = _t((10,), vt.float64)
    want = b[1:].numpy() + b[:-1].numpy()
    c = b.clone()
    c[1:].add_(c[:-1])           # overlapping source and destination: numpy buffers the overlap
    assert np.array_equal(c[1:].numpy(), want)


def test_division_by_zero_is_silent_like_out_of_place():
    t = vt.tensor([1.0, -1.0, 0.0])
    with np.errstate(all="raise"):
        t.div_(0.0)
    got = t.numpy()
    assert got[0] == np.inf and got[1] == -np.inf and np.isnan(got[2])


def test_general_path_cases_keep_their_errors_and_results(monkeypatch, device):
    t = vt.zeros(3, device=device)
    with pytest.raises(vt.ShapeError, match="cannot change the shape"):
        t.add_(vt.ones(2, 3, device=device))        # broadcast would grow t
    e = vt.ones(3, device=device).expand(2, 3)
    with pytest.raises(RuntimeError, match="read-only"):
        e.add_(1.0)
    f = vt.ones(3)
    f.add_(vt.tensor([0.5, 0.5, 0.5], dtype=vt.float64))  # float64 operand: general path, cast back
    assert f.dtype is vt.float32 and np.array_equal(f.numpy(), np.full(3, 1.5, np.float32))
    h = vt.ones(3, dtype=vt.bfloat16)
    h.add_(vt.tensor([0.5, 0.25, 2.0]))              # float32 result into bfloat16 (torch allows it)
    assert h.dtype is vt.bfloat16 and np.array_equal(h.float().numpy(), [1.5, 1.25, 3.0])
    i32 = vt.tensor([1, 2, 3], dtype=vt.int32)
    i32.add_(vt.tensor([10, 20, 30], dtype=vt.int64))  # int64 result into int32
    assert i32.dtype is vt.int32 and np.array_equal(i32.numpy(), [11, 22, 33])
    i = vt.tensor([1, 2, 3])
    i.mul_(2)                                        # integer tensors: general path
    assert np.array_equal(i.numpy(), [2, 4, 6])
    with pytest.raises(vt.DTypeError):
        i.div_(2)                                    # true division cannot land in an int tensor
    calls = _count_dispatch(monkeypatch)
    g = vt.ones(3)
    g.div_(2.0, rounding_mode="floor")               # other kwargs: general path
    assert "floor_divide" in calls and np.array_equal(g.numpy(), np.zeros(3, np.float32))


def test_library_override_is_respected():
    lib = Library("vt", "IMPL")
    lib.impl("add", lambda a, b, alpha=1: a * 0 + 42, dispatch_key="CPU")
    try:
        t = vt.ones(3)
        t.add_(1.0)
        assert np.array_equal(t.numpy(), np.full(3, 42, np.float32))
    finally:
        lib.close()
    t = vt.ones(3)
    t.add_(1.0)
    assert np.array_equal(t.numpy(), np.full(3, 2, np.float32))


def test_version_bump_still_catches_a_modified_saved_tensor():
    x = vt.randn(4, requires_grad=True)
    w = vt.randn(4)
    y = (x * w).sum()                # mul saved w
    with vt.no_grad():
        w.add_(1.0)                  # direct path
    with pytest.raises(vt.AutogradError, match="modified by an inplace operation"):
        y.backward()


def test_cuda_overlap_rule_on_host_arrays():
    """The CUDA path's operand rule (``inplace._same_or_disjoint``), checked where CI can run it: numpy
    arrays stand in for CuPy's (same ``flags``/``nbytes``/``shape``; ``data.ptr`` from the buffer)."""
    from vibetensor.core import inplace

    class Arr:
        def __init__(self, a):
            self.a, self.flags, self.nbytes, self.shape = a, a.flags, a.nbytes, a.shape
            self.data = type("P", (), {"ptr": a.__array_interface__["data"][0]})()

    base = np.zeros(16, np.float32)
    a = Arr(base[:8])
    assert inplace._same_or_disjoint(a, a)
    assert inplace._same_or_disjoint(a, Arr(base[:8]))            # same storage, same positions
    assert inplace._same_or_disjoint(a, Arr(base[8:]))            # disjoint
    assert not inplace._same_or_disjoint(a, Arr(base[1:9]))       # shifted overlap: unsafe
    assert not inplace._same_or_disjoint(a, Arr(base[:4]))        # same start, different extent
    assert not inplace._same_or_disjoint(a, Arr(base[::2]))       # non-contiguous: not judged, general path


@pytest.mark.parametrize("dtype", [vt.float32, vt.bfloat16, vt.int64, vt.bool])
def test_zero_writes_only_the_view_and_bumps_the_version(device, dtype):
    """zero_ without a temporary (one memset for contiguous CUDA memory, else a fill): a contiguous slice,
    a strided view and a whole tensor are zeroed exactly where they point, nowhere else."""
    base = vt.tensor(RNG.integers(1, 9, size=(6, 10)), dtype=dtype, device=device)
    ref = base.cpu().numpy().copy()
    v0 = base._version
    base[2:4].zero_()  # contiguous rows
    base[:, 7].zero_()  # a strided column
    ref[2:4] = 0
    ref[:, 7] = 0
    np.testing.assert_array_equal(base.cpu().numpy(), ref)
    assert base._version == v0 + 2
    empty = vt.zeros(0, 3, dtype=dtype, device=device)
    assert empty.zero_() is empty
    base.zero_()
    assert not base.cpu().numpy().any()
    leaf = vt.ones(3, device=device, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf"):
        leaf.zero_()
