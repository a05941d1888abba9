"""Sharded forward and backward equal the unsharded result, for every op family with a sharding rule,
on 1-d and 2-d meshes of virtual CPU devices; ops without a rule fall back with an event."""
import numpy as np
import pytest

import vibetensor as vt
import vibetensor.nn.functional as F
from vibetensor import observe
from vibetensor.fabric import Partial, Replicate, Shard, distribute_tensor, init_device_mesh

S0, S1, S2, R = Shard(0), Shard(1), Shard(2), Replicate()
PS = Partial("sum")


def check(fn, arrays, placements, mesh_shape=(4,), grad=(), out_placements=None, ints=(), no_fallback=True):
    """fn on plain tensors vs fn on DTensors laid out as ``placements``: forward, and gradients of the
    inputs listed in ``grad``. ``ints``: indices of integer inputs."""
    mesh = init_device_mesh("cpu", mesh_shape)
    def make(i, a):
        if i in ints:
            return vt.tensor(a, dtype=vt.int64)
        t = vt.tensor(a, dtype=vt.float64)
        return t.requires_grad_(True) if i in grad else t
    plain = [make(i, a) for i, a in enumerate(arrays)]
    ref = fn(*plain)
    dts = []
    for i, (a, pl) in enumerate(zip(arrays, placements)):
        t = make(i, a)
        dts.append(distribute_tensor(t, mesh, pl) if pl is not None else t)
    before = vt.fabric.stats().ops_fallback
    out = fn(*dts)
    np.testing.assert_allclose(out.full_tensor().detach().numpy(), ref.detach().numpy(), rtol=1e-10, atol=1e-10)
    if out_placements is not None:
        assert out.placements == tuple(out_placements), out.placements
    if grad:
        up = np.random.randn(*tuple(ref.shape))
        ref.backward(vt.tensor(up, dtype=vt.float64))
        out.backward(distribute_tensor(vt.tensor(up, dtype=vt.float64), mesh, [R] * len(mesh_shape)))
        for i in grad:
            assert dts[i].grad is not None, f"input {i} got no gradient"
            g = dts[i].grad
            g = g.full_tensor() if hasattr(g, "full_tensor") else g
            np.testing.assert_allclose(g.numpy(), plain[i].grad.numpy(), rtol=1e-9, atol=1e-10,
                                       err_msg=f"grad of input {i}")
    if no_fallback:
        assert vt.fabric.stats().ops_fallback == before, vt.fabric.stats().fallback_reasons
    return out, dts


def rn(*s):
    return np.random.randn(*s)


# ------------------------------------------------------------------ elementwise
@pytest.mark.parametrize("pa, pb, want", [
    (S0, S0, S0), (S1, R, S1), (R, S0, S0), (R, R, R), (PS, PS, PS), (S0, S1, S0)])
def test_add_mul_broadcast(cpu_devices, pa, pb, want):
    check(lambda a, b: a + b, [rn(5, 7), rn(5, 7)], [[pa], [pb]], grad=(0, 1), out_placements=[want])
    check(lambda a, b: a * b * 2.0 - a / (b * b + 1), [rn(5, 7), rn(5, 7)], [[pa if pa != PS else S0], [pb]],
          grad=(0, 1))


def test_broadcast_and_scalars(cpu_devices):
    check(lambda a, b: a * b + 3, [rn(6, 5), rn(5)], [[S1], [S0]], grad=(0, 1), out_placements=[S1])
    check(lambda a, b: a - b, [rn(6, 5), rn(6, 1)], [[S0], [S0]], grad=(0, 1), out_placements=[S0])
    check(lambda a, b: a - b, [rn(6, 5), rn(6, 1)], [[S1], [S0]], grad=(0, 1))
    check(lambda a: 2.0 ** a.tanh() + a.exp().log1p().sqrt(), [rn(9, 3)], [[S0]], grad=(0,), out_placements=[S0])
    # Partial stays Partial through linear ops only
    check(lambda a: (-a) * 2.0, [rn(4, 4)], [[PS]], grad=(0,), out_placements=[PS])
    check(lambda a: a.exp(), [rn(4, 4)], [[PS]], grad=(0,), out_placements=[R])


def test_activations_and_where(cpu_devices):
    check(lambda a: F.relu(a) + F.gelu(a) + a.sigmoid() + F.silu(a), [rn(7, 6)], [[S1]], grad=(0,))
    check(lambda a, b: vt.where(a > b, a, b * 2), [rn(7, 6), rn(7, 6)], [[S0], [S0]], grad=(0, 1),
          out_placements=[S0])
    check(lambda a: a.clamp(-0.5, 0.5) + a.abs(), [rn(8, 3)], [[S0]], grad=(0,))
    check(lambda a: a.to(vt.float32).to(vt.float64), [rn(5, 5)], [[S1]], grad=(0,), out_placements=[S1])


def test_elementwise_2d_mesh(cpu_devices):
    check(lambda a, b: a * b + a, [rn(5, 6), rn(5, 6)], [[S0, S1], [S0, R]], mesh_shape=(2, 2), grad=(0, 1),
          out_placements=[S0, S1])
    check(lambda a, b: a + b, [rn(5, 6), rn(5, 6)], [[PS, S1], [PS, S1]], mesh_shape=(2, 2), grad=(0, 1),
          out_placements=[PS, S1])


# ------------------------------------------------------------------ reductions
@pytest.mark.parametrize("pl", [S0, S1, R, PS])
@pytest.mark.parametrize("dim", [0, 1, None, (0, 1)])
def test_sum_mean(cpu_devices, pl, dim):
    kw = {} if dim is None else {"dim": dim}
    out, _ = check(lambda a: a.sum(**kw), [rn(7, 5)], [[pl]], grad=(0,))
    if isinstance(pl, Shard) and (dim is None or pl.dim in ((dim,) if isinstance(dim, int) else dim)):
        assert out.placements == (PS,)
    check(lambda a: a.mean(**kw) * 3, [rn(7, 5)], [[pl]], grad=(0,))
    check(lambda a: a.sum(dim=1, keepdim=True), [rn(3, 6)], [[pl]], grad=(0,))   # empty shards on S1


def test_reductions_keep_other_dims(cpu_devices):
    out, _ = check(lambda a: a.sum(1), [rn(8, 3, 2)], [[S2]], grad=(0,), out_placements=[S1])
    check(lambda a: a.amax(1), [rn(8, 5)], [[S0]], grad=(0,), out_placements=[S0])
    check(lambda a: a.amax(0), [rn(8, 5)], [[S0]], grad=(0,), out_placements=[Partial("max")])
    check(lambda a: a.amin(0), [rn(8, 5)], [[S0]], grad=(0,), out_placements=[Partial("min")])
    check(lambda a: a.var(0), [rn(8, 5)], [[S0]], grad=(0,), out_placements=[R])
    check(lambda a: a.var(1) + a.std(1), [rn(8, 5)], [[S0]], grad=(0,), out_placements=[S0])
    check(lambda a: a.logsumexp(1), [rn(8, 5)], [[S0]], grad=(0,), out_placements=[S0])
    check(lambda a: a.max(1).values, [rn(8, 5)], [[S0]], grad=(0,), out_placements=[S0])
    check(lambda a: a.cumsum(1), [rn(8, 5)], [[S0]], grad=(0,), out_placements=[S0])
    check(lambda a: a.sum(), [rn(6, 4)], [[S0, S1]], mesh_shape=(2, 2), grad=(0,), out_placements=[PS, PS])


# ------------------------------------------------------------------ softmax / norms
@pytest.mark.parametrize("pl, want", [(S0, S0), (S1, S1), (S2, R), (R, R)])
def test_softmax_family(cpu_devices, pl, want):
    check(lambda a: F.softmax(a, dim=-1), [rn(5, 6, 7)], [[pl]], grad=(0,), out_placements=[want])
    check(lambda a: F.log_softmax(a, dim=2), [rn(5, 6, 7)], [[pl]], grad=(0,), out_placements=[want])


def test_layer_norm_rms_norm(cpu_devices):
    x, w, b = rn(6, 3, 8), rn(8), rn(8)
    check(lambda x, w, b: F.layer_norm(x, (8,), w, b), [x, w, b], [[S0], [R], [R]], grad=(0, 1, 2),
          out_placements=[S0])
    check(lambda x, w, b: F.layer_norm(x, (8,), w, b), [x, w, b], [[S1], [R], [R]], grad=(0, 1, 2))
    check(lambda x, w, b: F.layer_norm(x, (8,), w, b), [x, w, b], [[S2], [R], [R]], grad=(0, 1, 2),
          out_placements=[R])
    check(lambda x, w: F.rms_norm(x, (8,), w), [x, w], [[S0], [R]], grad=(0, 1), out_placements=[S0])


# ------------------------------------------------------------------ views
def test_views_keep_sharded_dim(cpu_devices):
    check(lambda a: a.reshape(8, 3, 2, 2), [rn(8, 3, 4)], [[S0]], grad=(0,), out_placements=[S0])
    check(lambda a: a.reshape(24, 4), [rn(8, 3, 4)], [[S0]], grad=(0,), out_placements=[S0])   # even merge
    check(lambda a: a.reshape(8, 12), [rn(8, 3, 4)], [[S1]], grad=(0,), out_placements=[R])    # not intact
    check(lambda a: a.view(4, 2, 3), [rn(8, 3)], [[S0]], grad=(0,), out_placements=[S0])       # even split
    check(lambda a: a.view(2, 4, 3), [rn(8, 3)], [[S0]], grad=(0,), out_placements=[R])        # uneven split
    check(lambda a: a.flatten(1), [rn(5, 3, 4)], [[S0]], grad=(0,), out_placements=[S0])
    check(lambda a: a.transpose(0, 1), [rn(5, 3)], [[S0]], grad=(0,), out_placements=[S1])
    check(lambda a: a.permute(2, 0, 1), [rn(5, 3, 2)], [[S1]], grad=(0,), out_placements=[S2])
    check(lambda a: a.unsqueeze(0).squeeze(0), [rn(5, 3)], [[S1]], grad=(0,), out_placements=[S1])
    check(lambda a: a.squeeze(), [rn(4, 1, 3)], [[S0]], grad=(0,), out_placements=[S0])
    check(lambda a: a.unsqueeze(1).expand(5, 4, 3), [rn(5, 3)], [[S0]], grad=(0,), out_placements=[S0])
    check(lambda a: a.t() @ a, [rn(6, 3)], [[S0]], grad=(0,))
    check(lambda a: a[:, 1:3], [rn(7, 5)], [[S0]], grad=(0,), out_placements=[S0])
    check(lambda a: a[2:5], [rn(7, 5)], [[S0]], grad=(0,), out_placements=[R])
    check(lambda a: a[..., 0, None], [rn(7, 5)], [[S0]], grad=(0,), out_placements=[S0])


def test_cat_stack_split(cpu_devices):
    check(lambda a, b: vt.cat([a, b], dim=1), [rn(6, 2), rn(6, 3)], [[S0], [S0]], grad=(0, 1), out_placements=[S0])
    check(lambda a, b: vt.stack([a, b], dim=0), [rn(6, 2), rn(6, 2)], [[S0], [S0]], grad=(0, 1),
          out_placements=[S1])
    out, _ = check(lambda a: a.split(2, dim=1)[1], [rn(6, 5)], [[S0]], grad=(0,), out_placements=[S0])
    check(lambda a: a.chunk(2, dim=1)[0] * a.narrow(1, 1, 2), [rn(6, 4)], [[S0]], grad=(0,))


# ------------------------------------------------------------------ matmul / linear / embedding
def test_linear_parallel_styles(cpu_devices):
    x, w, b = rn(3, 7), rn(9, 7), rn(9)   # uneven: 7 -> 2,2,2,1 and 9 -> 3,3,3,0
    check(F.linear, [x, w, b], [[R], [S0], [S0]], grad=(0, 1, 2), out_placements=[S1])       # column
    check(F.linear, [x, w, b], [[S1], [S1], [R]], grad=(0, 1, 2), out_placements=[PS])       # row
    check(F.linear, [x, w, b], [[S0], [R], [R]], grad=(0, 1, 2), out_placements=[S0])        # data
    check(F.linear, [rn(2, 5, 7), w, b], [[S1], [R], [R]], grad=(0, 1, 2), out_placements=[S1])
    check(F.linear, [x, w, b], [[S0, R], [R, S0], [R, S0]], mesh_shape=(2, 2), grad=(0, 1, 2),
          out_placements=[S0, S1])


def test_column_then_row_parallel_mlp(cpu_devices):
    """Megatron MLP: forward and backward equal the unsharded result; gradients keep the weights' layout."""
    x, w1, b1, w2, b2 = rn(4, 6), rn(10, 6), rn(10), rn(5, 10), rn(5)
    fn = lambda x, w1, b1, w2, b2: F.linear(F.gelu(F.linear(x, w1, b1)), w2, b2)  # noqa: E731
    out, d = check(fn, [x, w1, b1, w2, b2], [[R], [S0], [S0], [S1], [R]], grad=(0, 1, 2, 3, 4),
                   out_placements=[PS])
    assert d[1].grad.placements == (S0,) and d[2].grad.placements == (S0,)
    assert d[3].grad.placements == (S1,) and d[4].grad.placements == (R,) and d[0].grad.placements == (R,)
    # on a 2x2 mesh: data parallel on dp, tensor parallel on tp
    check(fn, [x, w1, b1, w2, b2], [[S0, R], [R, S0], [R, S0], [R, S1], [R, R]], mesh_shape=(2, 2),
          grad=(0, 1, 2, 3, 4), out_placements=[S0, PS])


@pytest.mark.parametrize("pa, pb, want", [
    (S0, R, S0), (R, S1, S1), (S1, S0, PS), (R, R, R), (PS, R, PS)])
def test_matmul_2d(cpu_devices, pa, pb, want):
    check(lambda a, b: a @ b, [rn(6, 5), rn(5, 7)], [[pa], [pb]], grad=(0, 1), out_placements=[want])


def test_same_tensor_on_both_sides(cpu_devices):
    check(lambda m: m @ m, [rn(6, 6)], [[S0]], grad=(0,))
    check(lambda v: vt.dot(v, v) + (v * v).sum(), [rn(9)], [[S0]], grad=(0,))
    check(lambda x: F.scaled_dot_product_attention(x, x, x), [rn(4, 2, 5, 3)], [[S0]], grad=(0,),
          out_placements=[S0])     # self-attention: one tensor as q, k and v


def test_batched_matmul(cpu_devices):
    check(lambda a, b: a @ b, [rn(4, 3, 5), rn(4, 5, 2)], [[S0], [S0]], grad=(0, 1), out_placements=[S0])
    check(lambda a, b: a @ b, [rn(4, 3, 5), rn(5, 2)], [[S0], [R]], grad=(0, 1), out_placements=[S0])
    check(lambda a, b: vt.bmm(a, b), [rn(4, 3, 5), rn(4, 5, 2)], [[S1], [R]], grad=(0, 1), out_placements=[S1])


@pytest.mark.parametrize("pi, pw, want", [(S0, R, S0), (R, S1, Shard(2)), (R, S0, PS), (S1, R, S1)])
def test_embedding(cpu_devices, pi, pw, want):
    ids = np.random.randint(0, 11, size=(5, 3))
    _, d = check(lambda i, w: F.embedding(i, w), [ids, rn(11, 4)], [[pi], [pw]], grad=(1,), ints=(0,),
                 out_placements=[want])
    assert d[1].grad.placements == (pw,)     # the table's gradient is laid out like the table


# ------------------------------------------------------------------ fallback, mixing, in-place
def test_fallback_records_event_and_counter(cpu_devices):
    seq = observe.latest_seq() + 1
    before = vt.fabric.stats()
    out, _ = check(lambda a: a.sort(dim=0).values, [rn(7, 3)], [[S0]], grad=(0,), no_fallback=False)
    assert out.placements == (R,)
    after = vt.fabric.stats()
    assert after.ops_fallback > before.ops_fallback
    assert any("sort" in k for k in after.fallback_reasons)
    ev = [e for e in vt.fabric.events(seq) if e.kind is observe.EventKind.FABRIC_FALLBACK]
    assert ev and ev[0].name == "sort" and "no sharding rule" in ev[0].extra["reason"]


def test_plain_tensor_joins_as_replicate(cpu_devices):
    mesh = init_device_mesh("cpu", (4,))
    a = rn(6, 3)
    d = distribute_tensor(vt.tensor(a, dtype=vt.float64), mesh, [S0])
    out = d + vt.tensor(np.ones(3), dtype=vt.float64)
    assert out.placements == (S0,)
    np.testing.assert_allclose(out.full_tensor().numpy(), a + 1)
    with pytest.raises(ValueError, match="different meshes"):
        d + distribute_tensor(vt.tensor(a, dtype=vt.float64), init_device_mesh("cpu", (2,)), [S0])
    with pytest.raises(ValueError, match="Distribute it first"):
        d * vt.ones(3, dtype=vt.float64, requires_grad=True)
    with pytest.raises(vt.DeviceMismatchError, match="plain tensor on"):
        _cuda_plain(d)


def _cuda_plain(d):
    from vibetensor.core.tensor import Tensor
    fake = Tensor._make(np.ones(3), vt.Device("cuda", 0))   # never computed on: only its device is read
    return d + fake


def test_inplace_update_keeps_layout(cpu_devices):
    mesh = init_device_mesh("cpu", (4,))
    a, g = rn(6, 3), rn(6, 3)
    p = distribute_tensor(vt.tensor(a, dtype=vt.float64, requires_grad=True), mesh, [S0])
    with vt.no_grad():
        p.sub_(distribute_tensor(vt.tensor(g, dtype=vt.float64), mesh, [R]) * 0.1)
        p.mul_(2.0)
    assert p.placements == (S0,)
    np.testing.assert_allclose(p.detach().full_tensor().numpy(), (a - 0.1 * g) * 2)
    with vt.no_grad():
        p.zero_()
    assert float(p.detach().abs().sum()) == 0.0
    with pytest.raises(vt.AutogradError, match="no_grad"):
        p.add_(1.0)


@pytest.mark.parametrize("pl", [S0, S1])
def test_attention_sharded_over_batch_or_heads(cpu_devices, pl):
    q, k, v = rn(2, 4, 5, 3), rn(2, 4, 6, 3), rn(2, 4, 6, 3)
    mask = rn(5, 6)
    check(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True), [q, k, v], [[pl]] * 3,
          grad=(0, 1, 2), out_placements=[pl])
    check(lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m), [q, k, v, mask],
          [[pl]] * 3 + [[R]], grad=(0, 1, 2, 3), out_placements=[pl])


@pytest.mark.parametrize("red", ["mean", "sum", "none"])
def test_losses_sharded_over_batch(cpu_devices, red):
    x = rn(7, 5)
    t = np.random.randint(0, 5, size=7)
    t[2] = -100   # ignored
    want = {"mean": PS, "sum": PS, "none": S0}[red]
    check(lambda x, t: F.cross_entropy(x, t, reduction=red), [x, t], [[S0], [S0]], grad=(0,), ints=(1,),
          out_placements=[want])
    w = np.abs(rn(5)) + 0.1
    check(lambda x, t, w: F.cross_entropy(x, t, weight=w, reduction=red, label_smoothing=0.1), [x, t, w],
          [[S0], [R], [R]], grad=(0,), ints=(1,), out_placements=[want])
    check(lambda x, t: F.cross_entropy(x, t.softmax(-1), reduction=red), [x, rn(7, 5)], [[S0], [S0]],
          grad=(0, 1), out_placements=[want])
    check(lambda x, t: F.mse_loss(x, t, reduction=red), [x, rn(7, 5)], [[S0], [S0]], grad=(0, 1),
          out_placements=[want])
    check(lambda x, t: F.mse_loss(x, t, reduction=red), [x, rn(7, 5)], [[S1], [S1]], grad=(0, 1))


IDX = np.array([2, 0, 1])
EXTRA = [  # (name, fn, shapes, placements, differentiable)
    ("flip", lambda a: a.flip(1), [(6, 4)], [[S0]], True),
    ("flip2", lambda a: a.flip(1, 0), [(6, 4)], [[S0]], True),
    ("roll", lambda a: a.roll(1, 1), [(6, 4)], [[S0]], True),
    ("cumprod", lambda a: a.cumprod(1), [(6, 4)], [[S0]], True),
    ("prod", lambda a: a.prod(1), [(8, 4)], [[S0]], True),   # (6, 4) leaves an empty shard: see test below
    ("norm", lambda a: a.norm(dim=1), [(6, 4)], [[S0]], True),
    ("index_select", lambda a: a.index_select(1, vt.tensor(IDX)), [(6, 4)], [[S0]], True),
    ("tril", lambda a: a.tril(), [(3, 4, 4)], [[S0]], True),
    ("diagonal", lambda a: a.diagonal(dim1=1, dim2=2), [(5, 3, 3)], [[S0]], True),
    ("unbind", lambda a: a.unbind(1)[2], [(6, 4)], [[S0]], True),
    ("movedim", lambda a: a.movedim(0, 2), [(6, 4, 2)], [[S0]], True),
    ("dot", lambda a, b: vt.dot(a, b), [(9,), (9,)], [[S0], [S0]], True),
    ("mv", lambda a, b: vt.mv(a, b), [(6, 5), (5,)], [[S0], [R]], True),
    ("mv_k", lambda a, b: vt.mv(a, b), [(6, 5), (5,)], [[S1], [S0]], True),
    ("outer", lambda a, b: vt.outer(a, b), [(6,), (5,)], [[S0], [R]], True),
    ("argmax", lambda a: a.argmax(1), [(6, 4)], [[S0]], False),
    ("count_nonzero", lambda a: (a > 0).sum(0) + vt.count_nonzero(a, 0), [(6, 4)], [[S0]], False),
    ("all_any", lambda a: (a > -10).all(1).to(vt.int64) + (a > 1).any(1).to(vt.int64), [(6, 4)], [[S0]], False),
    ("isclose", lambda a, b: vt.isclose(a, b).to(vt.float64) + vt.nan_to_num(a / b), [(6, 4), (6, 4)],
     [[S1], [S1]], False),
]


@pytest.mark.parametrize("name, fn, shapes, pls, diff", EXTRA, ids=[e[0] for e in EXTRA])
def test_more_ops_with_rules(cpu_devices, name, fn, shapes, pls, diff):
    arrays = [rn(*s) for s in shapes]
    check(fn, arrays, pls, grad=tuple(range(len(arrays))) if diff else ())
    if len(shapes[0]) >= 2 and all(p == [S0] for p in pls):  # and on a 2-d mesh
        check(fn, arrays, [[S0, R]] * len(arrays), mesh_shape=(2, 2), grad=tuple(range(len(arrays))) if diff else ())


@pytest.mark.parametrize("pl", [S0, S1])
def test_conv_and_pools(cpu_devices, pl):
    x, w, b = rn(5, 4, 6, 6), rn(3, 4, 3, 3), rn(3)
    if pl == S0:
        check(lambda x, w, b: F.conv2d(x, w, b, padding=1), [x, w, b], [[S0], [R], [R]], grad=(0, 1, 2),
              out_placements=[S0])
    check(lambda x: F.max_pool2d(x, 2), [x], [[pl]], grad=(0,), out_placements=[pl])
    check(lambda x: F.avg_pool2d(x, 3, stride=1, padding=1), [x], [[pl]], grad=(0,), out_placements=[pl])


@pytest.mark.parametrize("red", ["mean", "sum", "none"])
def test_nll_and_bce_sharded_over_batch(cpu_devices, red):
    x = rn(7, 5)
    t = np.random.randint(0, 5, size=7)
    t[3] = -100
    w = np.abs(rn(5)) + 0.1
    want = {"mean": PS, "sum": PS, "none": S0}[red]
    check(lambda x, t, w: F.nll_loss(F.log_softmax(x, -1), t, weight=w, reduction=red), [x, t, w],
          [[S0], [S0], [R]], grad=(0,), ints=(1,), out_placements=[want])
    tt = np.random.rand(7, 5)
    check(lambda x, t: vt.ops.vt.binary_cross_entropy_with_logits(x, t, reduction=red), [x, tt], [[S0], [S0]],
          grad=(0,), out_placements=[want])
    check(lambda x, t, pw: vt.ops.vt.binary_cross_entropy_with_logits(x, t, pos_weight=pw, reduction=red),
          [x, tt, w], [[S0], [S0], [R]], grad=(0,), out_placements=[want])
    check(lambda x, t, w: vt.ops.vt.binary_cross_entropy(x.sigmoid(), t, weight=w, reduction=red), [x, tt, rn(7, 5) ** 2],
          [[S0], [S0], [S0]], grad=(0,), out_placements=[want])


def test_bad_shapes_give_clear_errors(cpu_devices):
    mesh = init_device_mesh("cpu", (4,))
    a = distribute_tensor(vt.randn(6, 2), mesh, [S0])
    b = distribute_tensor(vt.randn(5, 3), mesh, [S0])
    with pytest.raises(vt.ShapeError):
        vt.cat([a, b], dim=1)
    c = distribute_tensor(vt.randn(4, 7), mesh, [R])
    with pytest.raises(vt.ShapeError, match=r"global shapes/placements: \(6, 2\) \[Shard\(dim=0\)\], \(4, 7\)"):
        a @ c
