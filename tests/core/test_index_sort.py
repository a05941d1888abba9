"""Sorting ops: sort, topk, unique, nonzero, one_hot (values vs numpy/PyTorch, gradients vs finite
differences)."""
import numpy as np
import pytest

import vibetensor as vt
from tests.opcheck import check_op, ALL

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

R = np.random.randn
ALL_DTYPES = ALL


from tests.core._index_util import _rand_of, _skip_cuda_bf16  # noqa: E402


# ------------------------------------------------------------------------------------------- sort / topk
@pytest.mark.parametrize("dim,desc", [(-1, False), (0, True), (1, True)])
def test_sort_values_indices_grads(dim, desc, device):
    a = R(4, 5, 3)
    ref = (lambda x: -np.sort(-x, axis=dim)) if desc else (lambda x: np.sort(x, axis=dim))
    check_op(lambda x: x.sort(dim, descending=desc).values, ref, [a], device=device)
    out = vt.tensor(a, device=device).sort(dim=dim, descending=desc)
    assert out.indices.dtype is vt.int64
    np.testing.assert_array_equal(out.indices.cpu().numpy(), np.argsort(-a if desc else a, axis=dim, kind="stable"))
    np.testing.assert_array_equal(vt.tensor(a, device=device).argsort(dim, descending=desc).cpu().numpy(),
                                  out.indices.cpu().numpy())


def test_sort_stable_ties_and_nan(device):
    x = vt.tensor([2.0, 1.0, 2.0, float("nan"), 1.0, 2.0], device=device)
    asc = x.sort(stable=True)
    np.testing.assert_array_equal(asc.indices.cpu().numpy(), [1, 4, 0, 2, 5, 3])
    desc = x.sort(descending=True, stable=True)
    np.testing.assert_array_equal(desc.indices.cpu().numpy(), [3, 0, 2, 5, 1, 4])
    if torch is not None:
        t = torch.tensor([2.0, 1.0, 2.0, float("nan"), 1.0, 2.0])
        np.testing.assert_array_equal(desc.indices.cpu().numpy(), t.sort(descending=True, stable=True).indices)
    b = vt.tensor([True, False, True], device=device).sort(descending=True)
    np.testing.assert_array_equal(b.values.cpu().numpy(), [True, True, False])


@pytest.mark.parametrize("largest", [True, False])
def test_topk_values_indices_grads(largest, device):
    a = R(3, 6)
    k = 4
    ref = (lambda x: -np.sort(-x, 1)[:, :k]) if largest else (lambda x: np.sort(x, 1)[:, :k])
    check_op(lambda x: x.topk(k, largest=largest).values, ref, [a], device=device)
    check_op(lambda x: vt.topk(x, 2, dim=0, largest=largest)[0],
             (lambda x: -np.sort(-x, 0)[:2]) if largest else (lambda x: np.sort(x, 0)[:2]), [a], device=device)
    r = vt.tensor(a, device=device).topk(k, largest=largest)
    np.testing.assert_array_equal(np.take_along_axis(a, r.indices.cpu().numpy(), 1), to64(r.values))
    if torch is not None:
        tr = torch.tensor(a).topk(k, largest=largest)
        np.testing.assert_array_equal(r.indices.cpu().numpy(), tr.indices.numpy())
    with pytest.raises(IndexError, match=r"k \(7\) is out of range"):
        vt.zeros(3, 6).topk(7)
    assert tuple(vt.zeros(3, 6).topk(0).values.shape) == (3, 0)


def to64(t):
    return t.cpu().numpy().astype(np.float64)


@pytest.mark.parametrize("dt", ALL_DTYPES, ids=lambda d: d.name)
def test_sort_topk_every_dtype(dt, device):
    _skip_cuda_bf16(device, dt)
    a = _rand_of((3, 7), dt)
    x = vt.tensor(a, dtype=dt, device=device)
    s = x.sort(1)
    assert s.values.dtype is dt
    np.testing.assert_array_equal(to64(s.values), np.sort(a.astype(np.float64), 1))
    np.testing.assert_array_equal(np.take_along_axis(a, s.indices.cpu().numpy(), 1).astype(np.float64), to64(s.values))
    t = x.topk(3, dim=1)
    np.testing.assert_array_equal(to64(t.values), -np.sort(-a.astype(np.float64), 1)[:, :3])


# ------------------------------------------------------------------------------------------- unique / nonzero / one_hot
def test_unique(device):
    a = np.array([[3, 1, 3], [2, 1, 5]])
    x = vt.tensor(a, device=device)
    np.testing.assert_array_equal(vt.unique(x).cpu().numpy(), [1, 2, 3, 5])
    u, inv, cnt = x.unique(return_inverse=True, return_counts=True)
    np.testing.assert_array_equal(u.cpu().numpy(), [1, 2, 3, 5])
    np.testing.assert_array_equal(inv.cpu().numpy(), [[2, 0, 2], [1, 0, 3]])
    np.testing.assert_array_equal(cnt.cpu().numpy(), [2, 1, 2, 1])
    assert inv.dtype is vt.int64 and cnt.dtype is vt.int64
    rows = vt.tensor([[1, 2], [0, 1], [1, 2]], device=device).unique(dim=0, return_inverse=True)
    np.testing.assert_array_equal(rows[0].cpu().numpy(), [[0, 1], [1, 2]])
    np.testing.assert_array_equal(rows[1].cpu().numpy(), [1, 0, 1])
    if torch is not None:
        tu, ti, tc = torch.tensor(a).unique(return_inverse=True, return_counts=True)
        np.testing.assert_array_equal(inv.cpu().numpy(), ti.numpy())
        np.testing.assert_array_equal(cnt.cpu().numpy(), tc.numpy())


def test_nonzero(device):
    a = np.array([[0, 1.5, 0], [2, 0, -1]])
    x = vt.tensor(a, device=device)
    nz = x.nonzero()
    assert nz.dtype is vt.int64
    np.testing.assert_array_equal(nz.cpu().numpy(), np.argwhere(a))
    tup = vt.nonzero(x, as_tuple=True)
    assert len(tup) == 2
    for g, w in zip(tup, np.nonzero(a)):
        np.testing.assert_array_equal(g.cpu().numpy(), w)
    assert tuple(vt.tensor(5.0, device=device).nonzero().shape) == (1, 0)
    assert tuple(vt.tensor(0.0, device=device).nonzero().shape) == (0, 0)
    assert tuple(vt.zeros(0, 3, device=device).nonzero().shape) == (0, 2)


def test_one_hot(device):
    x = vt.tensor([[0, 2], [1, 2]], device=device)
    oh = vt.one_hot(x)
    assert oh.dtype is vt.int64 and tuple(oh.shape) == (2, 2, 3)
    np.testing.assert_array_equal(oh.cpu().numpy(), np.eye(3, dtype=np.int64)[x.cpu().numpy()])
    assert tuple(vt.one_hot(x, num_classes=5).shape) == (2, 2, 5)
    assert tuple(vt.one_hot(vt.zeros(0, dtype=vt.int64, device=device), 4).shape) == (0, 4)
    with pytest.raises(ValueError, match="out of range for num_classes=2"):
        vt.one_hot(x, 2)
    with pytest.raises(ValueError, match="non-negative"):
        vt.one_hot(vt.tensor([-1, 0]))
    with pytest.raises(ValueError, match="empty"):
        vt.one_hot(vt.zeros(0, dtype=vt.int64))
    with pytest.raises(TypeError, match="index tensors"):
        vt.one_hot(vt.zeros(2))
