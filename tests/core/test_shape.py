"""View and shape ops: values vs numpy (and PyTorch), gradients vs finite differences, view semantics,
dtypes, empty tensors, errors."""
import numpy as np
import pytest

import vibetensor as vt
from tests.opcheck import assert_close, check_op, noncontig, ALL

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

R = np.random.randn

ALL_DTYPES = ALL


def _rand_of(shape, dt):
    a = np.random.randn(*shape) * 5
    if dt is vt.bool:
        return a > 0
    if dt is vt.uint8:
        return np.abs(a).astype(np.uint8)
    return a.astype(dt.np)


# (name, vt fn, numpy reference, input shape)
VIEW_CASES = [
    ("transpose", lambda x: x.transpose(0, 2), lambda a: np.swapaxes(a, 0, 2), (2, 3, 4)),
    ("transpose_neg", lambda x: x.transpose(-1, -2), lambda a: np.swapaxes(a, -1, -2), (2, 3, 4)),
    ("t", lambda x: x.t(), lambda a: a.T, (3, 5)),
    ("t_1d", lambda x: x.t(), lambda a: a, (4,)),
    ("mT", lambda x: x.mT, lambda a: np.swapaxes(a, -1, -2), (2, 3, 4)),
    ("permute", lambda x: x.permute(2, 0, 1), lambda a: a.transpose(2, 0, 1), (2, 3, 4)),
    ("flatten", lambda x: x.flatten(), lambda a: a.reshape(-1), (2, 3, 4)),
    ("flatten_mid", lambda x: x.flatten(1, 2), lambda a: a.reshape(2, 12, 1), (2, 3, 4, 1)),
    ("flatten_neg", lambda x: vt.flatten(x, start_dim=-2), lambda a: a.reshape(2, 12), (2, 3, 4)),
    ("unflatten", lambda x: x.unflatten(1, (3, -1)), lambda a: a.reshape(2, 3, 2, 5), (2, 6, 5)),
    ("squeeze_all", lambda x: x.squeeze(), lambda a: a.reshape(3, 4), (1, 3, 1, 4)),
    ("squeeze_dim", lambda x: x.squeeze(-2), lambda a: a.reshape(1, 3, 4), (1, 3, 1, 4)),
    ("squeeze_tuple", lambda x: x.squeeze((0, 1, 2)), lambda a: a.reshape(3, 4), (1, 3, 1, 4)),
    ("unsqueeze", lambda x: x.unsqueeze(-1), lambda a: a[..., None], (3, 4)),
    ("narrow", lambda x: x.narrow(1, 1, 2), lambda a: a[:, 1:3], (3, 5)),
    ("narrow_negstart", lambda x: x.narrow(-1, -3, 2), lambda a: a[:, 2:4], (3, 5)),
    ("movedim", lambda x: x.movedim(0, -1), lambda a: np.moveaxis(a, 0, -1), (2, 3, 4)),
    ("movedim_tuple", lambda x: vt.movedim(x, (0, 1), (2, 0)), lambda a: np.moveaxis(a, (0, 1), (2, 0)),
     (2, 3, 4)),
    ("swapaxes", lambda x: x.swapaxes(0, 1), lambda a: np.swapaxes(a, 0, 1), (2, 3)),
    ("swapdims", lambda x: vt.swapdims(x, 0, 2), lambda a: np.swapaxes(a, 0, 2), (2, 3, 4)),
    ("diagonal", lambda x: x.diagonal(), lambda a: np.diagonal(a), (4, 5)),
    ("diagonal_off", lambda x: x.diagonal(1), lambda a: np.diagonal(a, 1), (4, 5)),
    ("diagonal_neg", lambda x: x.diagonal(-2, 0, 2), lambda a: np.diagonal(a, -2, 0, 2), (4, 3, 5)),
    ("diagonal_dims", lambda x: x.diagonal(0, -1, 1), lambda a: np.diagonal(a, 0, -1, 1), (2, 4, 3)),
    ("expand", lambda x: x.expand(2, 3, 4), lambda a: np.broadcast_to(a, (2, 3, 4)), (3, 1)),
    ("view", lambda x: x.view(4, -1), lambda a: a.reshape(4, -1), (2, 3, 4)),
    ("reshape", lambda x: x.reshape(6, 4), lambda a: a.reshape(6, 4), (2, 3, 4)),
    ("view_as_reshape_of_t", lambda x: x.t().reshape(-1), lambda a: a.T.reshape(-1), (3, 4)),
]


@pytest.mark.parametrize("name,fn,ref,shape", VIEW_CASES, ids=[c[0] for c in VIEW_CASES])
def test_view_ops_values_and_grads(name, fn, ref, shape, device):
    check_op(fn, ref, [R(*shape)], device=device)


@pytest.mark.parametrize("name,fn,ref,shape", VIEW_CASES[:20], ids=[c[0] for c in VIEW_CASES[:20]])
def test_view_ops_on_noncontiguous_input(name, fn, ref, shape, device):
    if len(shape) < 2:
        pytest.skip("1-d inputs are contiguous")
    check_op(fn, ref, [R(*shape)], device=device, make=lambda a: noncontig(a, device))


@pytest.mark.parametrize("fn", [
    lambda x: x.transpose(0, 1), lambda x: x.t(), lambda x: x.view(-1), lambda x: x.reshape(3, 4),
    lambda x: x.flatten(), lambda x: x.unsqueeze(0), lambda x: x.narrow(1, 1, 2), lambda x: x.diagonal(),
    lambda x: x.movedim(0, 1), lambda x: x.squeeze(), lambda x: x.permute(1, 0), lambda x: x.unflatten(0, (2, 2)),
    lambda x: x.split(2, 1)[1], lambda x: x.chunk(2, 0)[0], lambda x: x.unbind(1)[2], lambda x: x.swapaxes(0, 1),
], ids=["transpose", "t", "view", "reshape", "flatten", "unsqueeze", "narrow", "diagonal", "movedim", "squeeze",
        "permute", "unflatten", "split", "chunk", "unbind", "swapaxes"])
def test_views_share_storage_and_version(fn, device):
    base = vt.tensor(np.arange(12.0).reshape(4, 3), device=device)
    v = fn(base)
    assert v._vc is base._vc
    before = base._version
    v.fill_(-7.0)
    assert base._version == before + 1
    assert (base.cpu().numpy() == -7.0).sum() == v.numel()


def test_view_of_noncontiguous_raises_with_hint(device):
    x = vt.randn(3, 4, device=device).t()
    with pytest.raises(vt.ShapeError, match="reshape"):
        x.view(12)
    with pytest.raises(vt.ShapeError, match="invalid for input of size 12"):
        x.reshape(5, -1)
    with pytest.raises(vt.ShapeError, match="only one dimension can be -1"):
        x.reshape(-1, -1)
    with pytest.raises(vt.ShapeError, match="non-negative"):
        x.contiguous().view(-2, -6)


def test_reshape_copy_has_own_version_counter(device):
    x = vt.randn(3, 4, device=device)
    y = x.t().reshape(12)          # needs a copy
    assert y._vc is not x._vc
    y.fill_(1.0)
    assert not np.allclose(x.cpu().numpy(), 1.0)
    z = x.reshape(2, 6)            # contiguous: a view
    assert z._vc is x._vc


def test_reshape_of_a_strided_slice_is_a_view_with_gradients(device):
    """A split slice (non-contiguous, last-dim stride kept) reshaped into heads is a view of its base, as in
    PyTorch; a transposed tensor's reshape copies. Gradients through both match numpy's."""
    a = R(2, 5, 12)
    x = vt.tensor(a, dtype=vt.float64, device=device, requires_grad=True)
    q, k, v = x.split(4, dim=-1)
    h = k.reshape(2, 5, 2, 2)
    assert h._vc is x._vc and h._base is x
    t = x.transpose(0, 1).reshape(5, 24)          # not viewable: a copy with its own version counter
    assert t._vc is not x._vc
    w1, w2 = R(2, 5, 2, 2), R(5, 24)
    ((h * vt.tensor(w1, device=device)).sum() + (t * vt.tensor(w2, device=device)).sum()).backward()
    want = np.zeros_like(a)
    want[..., 4:8] = w1.reshape(2, 5, 4)
    want += w2.reshape(5, 2, 12).transpose(1, 0, 2)
    assert_close(x.grad, want)


def test_split_chunk_unbind_values(device):
    a = R(5, 7)
    x = vt.tensor(a, dtype=vt.float64, device=device)
    for got, ref in [(x.split(3, 1), np.split(a, [3, 6], 1)), (x.split([1, 4], 0), np.split(a, [1], 0)),
                     (x.chunk(3, -1), np.split(a, [3, 6], 1)), (x.unbind(0), list(a)),
                     (vt.tensor_split(x, 3, 1), np.array_split(a, 3, 1)),
                     (vt.tensor_split(x, [1, 4], 1), np.split(a, [1, 4], 1))]:
        assert len(got) == len(ref)
        for g, r in zip(got, ref):
            assert_close(g, r)
    # chunk may give fewer chunks than asked (PyTorch)
    assert len(vt.zeros(6, device=device).chunk(4)) == 3


@pytest.mark.parametrize("which", ["split", "split_sizes", "chunk", "unbind"])
def test_multi_output_grads_with_unused_outputs(which, device):
    a = R(4, 6)
    x = vt.tensor(a, dtype=vt.float64, device=device, requires_grad=True)
    parts = {"split": lambda: x.split(4, 1), "split_sizes": lambda: x.split([1, 2, 3], -1),
             "chunk": lambda: x.chunk(2, 0), "unbind": lambda: x.unbind(1)}[which]()
    w = R(*parts[-1].shape)
    (parts[-1] * vt.tensor(w, dtype=vt.float64, device=device)).sum().backward()
    expect = np.zeros_like(a)
    if which == "chunk":
        expect[2:] = w
    elif which == "unbind":
        expect[:, -1] = w
    else:
        expect[:, -w.shape[1]:] = w
    assert_close(x.grad, expect)
    # using every output (non-uniform weights) gives each its own slice back
    y = vt.tensor(a, dtype=vt.float64, device=device, requires_grad=True)
    ps = y.split([2, 4], 1)
    (ps[0] * 2.0).sum().backward(retain_graph=True)
    (ps[1] * 3.0).sum().backward()
    assert_close(y.grad, np.concatenate([np.full((4, 2), 2.0), np.full((4, 4), 3.0)], 1))


def test_split_errors():
    x = vt.zeros(6, 4)
    with pytest.raises(vt.ShapeError, match=r"sum exactly to 6"):
        x.split([2, 3])
    with pytest.raises(ValueError, match="positive"):
        x.split(0)
    with pytest.raises(IndexError, match=r"expected -2\.\.1"):
        x.split(2, 2)
    with pytest.raises(ValueError, match="chunks"):
        x.chunk(0)


@pytest.mark.parametrize("dim", [0, 1, -1, -2])
def test_cat_stack_values_grads(dim, device):
    arrs = [R(2, 3), R(2, 3), R(2, 3)]
    check_op(lambda a, b, c: vt.cat([a, b, c], dim), lambda a, b, c: np.concatenate([a, b, c], dim), arrs,
             device=device)
    check_op(lambda a, b, c: vt.stack((a, b, c), dim=dim), lambda a, b, c: np.stack([a, b, c], dim), arrs,
             device=device)
    check_op(lambda a, b: vt.cat((a, b), dim=dim), lambda a, b: np.concatenate([a, b], dim),
             [R(2, 3), R(2, 1) if dim in (1, -1) else R(4, 3)], device=device)


def test_cat_promotes_and_skips_legacy_empty(device):
    a = vt.tensor([[1, 2]], dtype=vt.int32, device=device)
    b = vt.tensor([[0.5, 1.5]], dtype=vt.float16, device=device)
    c = vt.cat([a, b])
    assert c.dtype is vt.float16
    assert_close(c, np.array([[1, 2], [0.5, 1.5]]))
    assert vt.cat([vt.tensor([True], device=device), vt.tensor([3], dtype=vt.int8, device=device)]).dtype is vt.int8
    assert vt.cat([vt.tensor([1], dtype=vt.uint8, device=device),
                   vt.tensor([-1], dtype=vt.int8, device=device)]).dtype is vt.int16
    assert vt.stack([vt.tensor([1], dtype=vt.bool, device=device),
                     vt.tensor([1], dtype=vt.bool, device=device)], 0).dtype is vt.bool  # positional dim
    e = vt.zeros(0, device=device)
    r = vt.cat([e, vt.ones(2, 3, device=device), e], 1)
    assert tuple(r.shape) == (2, 3)
    x = vt.randn(2, 3, dtype=vt.float64, device=device, requires_grad=True)
    y = vt.randn(2, 3, dtype=vt.float32, device=device, requires_grad=True)
    vt.cat([x, y]).sum().backward()
    assert x.grad.dtype is vt.float64 and y.grad.dtype is vt.float32


def test_cat_stack_errors():
    with pytest.raises(vt.ShapeError, match=r"\(2, 3\).*\(2, 4\)"):
        vt.cat([vt.zeros(2, 3), vt.zeros(2, 4)])
    with pytest.raises(vt.ShapeError, match="dimension 1"):
        vt.cat([vt.zeros(2, 3), vt.zeros(3, 4)], 1)
    with pytest.raises(vt.ShapeError, match="zero-dimensional"):
        vt.cat([vt.zeros(()), vt.zeros(())])
    with pytest.raises(TypeError, match="at least one tensor"):
        vt.cat([])
    with pytest.raises(IndexError, match=r"out of range.*-2\.\.1"):
        vt.cat([vt.zeros(2, 3)], 2)
    with pytest.raises(vt.ShapeError, match=r"\(2, 3\) at entry 0 and \(3, 2\) at entry 1"):
        vt.stack([vt.zeros(2, 3), vt.zeros(3, 2)])


COPY_CASES = [
    ("flip", lambda x: x.flip(0), lambda a: np.flip(a, 0).copy(), (3, 4)),
    ("flip_multi", lambda x: x.flip((0, -1)), lambda a: np.flip(a, (0, 2)).copy(), (2, 3, 4)),
    ("flip_varargs", lambda x: x.flip(0, 1), lambda a: np.flip(a, (0, 1)).copy(), (2, 3)),
    ("fliplr", lambda x: vt.fliplr(x), lambda a: a[:, ::-1].copy(), (2, 3)),
    ("roll", lambda x: x.roll(2, 1), lambda a: np.roll(a, 2, 1), (3, 5)),
    ("roll_flat", lambda x: x.roll(-3), lambda a: np.roll(a, -3), (3, 5)),
    ("roll_multi", lambda x: x.roll((1, -1), (0, 1)), lambda a: np.roll(a, (1, -1), (0, 1)), (3, 5)),
    ("repeat", lambda x: x.repeat(2, 3), lambda a: np.tile(a, (2, 3)), (2, 3)),
    ("repeat_newdims", lambda x: x.repeat(2, 1, 2), lambda a: np.tile(a, (2, 1, 2)), (2, 3)),
    ("tile", lambda x: x.tile((2,)), lambda a: np.tile(a, 2), (2, 3)),
    ("tril", lambda x: x.tril(), lambda a: np.tril(a), (4, 5)),
    ("tril_k", lambda x: x.tril(diagonal=-1), lambda a: np.tril(a, -1), (2, 4, 3)),
    ("triu", lambda x: x.triu(), lambda a: np.triu(a), (4, 5)),
    ("triu_k", lambda x: vt.triu(x, 2), lambda a: np.triu(a, 2), (2, 3, 5)),
]


@pytest.mark.parametrize("name,fn,ref,shape", COPY_CASES, ids=[c[0] for c in COPY_CASES])
def test_copy_ops_values_and_grads(name, fn, ref, shape, device):
    check_op(fn, ref, [R(*shape)], device=device)
    out = fn(vt.tensor(R(*shape), device=device))
    src = vt.tensor(R(*shape), device=device)
    out = fn(src)
    assert out._vc is not src._vc


# cases written with Tensor methods only, so the same lambda runs on torch tensors
TORCH_CASES = [c for c in COPY_CASES + VIEW_CASES if c[0] not in ("fliplr", "triu_k", "flatten_neg", "movedim_tuple",
                                                                  "swapdims")]


@pytest.mark.skipif(torch is None, reason="PyTorch not installed")
@pytest.mark.parametrize("name,fn,ref,shape", TORCH_CASES, ids=[c[0] for c in TORCH_CASES])
def test_against_torch(name, fn, ref, shape):
    a = R(*shape)
    want = fn(torch.tensor(a))
    got = fn(vt.tensor(a, dtype=vt.float64))
    np.testing.assert_allclose(got.numpy(), want.numpy())


@pytest.mark.parametrize("dt", ALL_DTYPES, ids=lambda d: d.name)
def test_every_dtype(dt, device):
    if device == "cuda" and dt is vt.bfloat16:
        from vibetensor.core import backend
        try:
            backend.check_cuda_dtype(dt)
        except TypeError:
            pytest.skip("installed CuPy has no bfloat16")
    a, b = _rand_of((3, 4), dt), _rand_of((3, 4), dt)
    x, y = vt.tensor(a, dtype=dt, device=device), vt.tensor(b, dtype=dt, device=device)
    pairs = [
        (x.t(), a.T), (x.flip(1), a[:, ::-1]), (x.roll(1, 0), np.roll(a, 1, 0)), (x.repeat(2, 1), np.tile(a, (2, 1))),
        (vt.cat([x, y], 1), np.concatenate([a, b], 1)), (vt.stack([x, y]), np.stack([a, b])),
        (x.tril(), np.tril(a)), (x.triu(1), np.triu(a, 1)), (x.split(3, 1)[1], a[:, 3:]), (x.diagonal(), a.diagonal()),
        (x.unbind(0)[2], a[2]), (x.reshape(-1), a.reshape(-1)), (x.narrow(0, 1, 1), a[1:2]),
    ]
    for got, want in pairs:
        assert got.dtype is dt
        np.testing.assert_array_equal(got.cpu().numpy().astype(np.float64), want.astype(np.float64))


def test_empty_tensors(device):
    x = vt.zeros(0, 3, device=device)
    assert tuple(x.t().shape) == (3, 0)
    assert tuple(x.flatten().shape) == (0,)
    assert tuple(x.reshape(3, -1).shape) == (3, 0)
    assert tuple(x.repeat(2, 2).shape) == (0, 6)
    assert tuple(x.flip(0).shape) == (0, 3)
    assert tuple(x.roll(1, 0).shape) == (0, 3)
    assert tuple(x.tril().shape) == (0, 3)
    assert tuple(vt.cat([x, x]).shape) == (0, 3)
    assert tuple(vt.stack([x, x], 1).shape) == (0, 2, 3)
    assert len(x.unbind(0)) == 0
    assert [tuple(p.shape) for p in x.split(2, 1)] == [(0, 2), (0, 1)]
    assert tuple(x.diagonal().shape) == (0,)
    assert tuple(x.squeeze().shape) == (0, 3)
    w = vt.zeros(2, 0, device=device, requires_grad=True)
    (w.t().flatten().sum() + vt.cat([w, w], 1).sum()).backward()
    assert tuple(w.grad.shape) == (2, 0)


def test_bad_dims_name_the_range():
    x = vt.zeros(2, 3)
    for call in [lambda: x.transpose(0, 2), lambda: x.squeeze(3), lambda: x.unsqueeze(4), lambda: x.flip(2),
                 lambda: x.movedim(0, 5), lambda: x.narrow(-3, 0, 1), lambda: x.roll(1, 2), lambda: x.unbind(2),
                 lambda: x.flatten(0, 2), lambda: x.diagonal(0, 0, 2)]:
        with pytest.raises(IndexError, match=r"out of range.*expected -\d\.\.\d"):
            call()


def test_shape_op_errors():
    x = vt.zeros(2, 3)
    with pytest.raises(vt.ShapeError, match="<= 2 dimensions"):
        vt.zeros(2, 2, 2).t()
    with pytest.raises(IndexError, match=r"start \(2\) \+ length \(2\) exceeds dimension 1 of size 3"):
        x.narrow(1, 2, 2)
    with pytest.raises(vt.ShapeError, match="cannot come after"):
        vt.zeros(2, 3, 4).flatten(2, 1)
    with pytest.raises(vt.ShapeError, match=r"unflatten.*\(2, 2\)"):
        x.unflatten(1, (2, 2))
    with pytest.raises(vt.ShapeError, match="smaller than the tensor's dims"):
        x.repeat(2)
    with pytest.raises(vt.ShapeError, match="at least 2 dimensions"):
        vt.zeros(3).tril()
    with pytest.raises(vt.ShapeError, match="only size-1 dims"):
        x.expand(4, 3)
    with pytest.raises(ValueError, match="same length"):
        x.roll((1, 2), 0)
    with pytest.raises(ValueError, match="repeated dim"):
        x.movedim((0, 0), (0, 1))
    with pytest.raises(ValueError, match="multiple times"):
        x.flip((0, -2))
    with pytest.raises(vt.ShapeError, match="identical"):
        x.diagonal(0, 1, -1)
    for m in ("view", "reshape"):  # numpy would take any negative size as -1; torch refuses
        with pytest.raises(vt.ShapeError, match=rf"{m}: invalid shape \(-2, 3\)"):
            getattr(x, m)(-2, 3)
        with pytest.raises(vt.ShapeError, match=rf"{m}: only one dimension can be -1"):
            getattr(x, m)(-1, -1)
        with pytest.raises(vt.ShapeError, match=rf"{m}: shape \(4, -1\) is invalid for input of size 6"):
            getattr(x, m)(4, -1)
    with pytest.raises(IndexError, match=r"transpose: dimension 2 out of range for a 2-d tensor"):
        x.transpose(0, 2)


def test_diagonal_is_writable_view():
    x = vt.zeros(3, 4)
    d = x.diagonal(1)
    d.fill_(5.0)
    np.testing.assert_array_equal(x.numpy(), np.eye(3, 4, 1) * 5)


@pytest.fixture
def two_cpus(monkeypatch):
    from vibetensor import _env
    monkeypatch.setenv("VT_CPU_DEVICES", "2")
    _env.reload()
    yield
    monkeypatch.delenv("VT_CPU_DEVICES")
    _env.reload()


def test_list_ops_refuse_mixed_devices(two_cpus):
    a, b = vt.zeros(2, device="cpu:0"), vt.zeros(2, device="cpu:1")
    for call in (lambda: vt.cat([a, b]), lambda: vt.stack([a, b])):
        with pytest.raises(vt.DeviceMismatchError, match="cpu:0, cpu:1"):
            call()


def test_backward_params_match_signature_bind():
    """``params`` (backward formulas reading forward arguments by name) matches ``Signature.bind`` with
    defaults applied for positional, keyword and defaulted arguments, and still raises bind's TypeError
    for a duplicate or unknown argument."""
    from types import SimpleNamespace
    from vibetensor.core.ops import shape_util
    from vibetensor.core.dispatcher import get_op
    for name, args, kwargs in [("diagonal", ("t",), {}), ("diagonal", ("t", 1), {"dim2": 0}),
                               ("diagonal", ("t", 1, 0, 2), {}), ("transpose", ("t", 0, 1), {}),
                               ("transpose", ("t",), {"dim1": 2, "dim0": 1}), ("topk", ("t", 3), {"largest": False}),
                               ("flip", ("t", 0, 1), {}), ("nonzero", ("t",), {"as_tuple": True})]:
        op = get_op(name)
        ctx = SimpleNamespace(args=args, kwargs=kwargs)
        ref = shape_util._SIGS[op.qualname].bind(*args, **kwargs)
        ref.apply_defaults()
        assert dict(shape_util.params(ctx, op)) == dict(ref.arguments), name
    for args, kwargs in [(("t", 0), {"dim0": 1}), (("t", 0, 1), {"bogus": 1}), (("t",), {"dim0": 1})]:
        with pytest.raises(TypeError):
            shape_util.params(SimpleNamespace(args=args, kwargs=kwargs), get_op("transpose"))
