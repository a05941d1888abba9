"""vt.utils.data: default_collate, DataLoader keyword arguments, RandomSampler (checked against PyTorch)."""
import inspect

import numpy as np
import pytest

import vibetensor as vt
from vibetensor.errors import ShapeError
from vibetensor.utils.data import DataLoader, RandomSampler, TensorDataset, default_collate

torch = pytest.importorskip("torch")
tdata = torch.utils.data


def _dtype_name(dt):
    return str(dt).rsplit(".", 1)[-1]


@pytest.mark.parametrize("batch", [
    [1, 2.5, 3.7], [1, 2, 3], [2.5, 1, 3], [True, 2], [True, False],
    [np.float32(1.5), np.float32(2)], [np.int32(1), np.int32(3)], [np.float64(0.1), np.float64(2)],
    [np.int64(1), 2.5],
], ids=repr)
def test_default_collate_numbers_match_torch(batch):
    got, want = default_collate(batch), tdata.default_collate(batch)
    assert _dtype_name(got.dtype) == _dtype_name(want.dtype)
    np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_default_collate_nested_numbers_match_torch():
    batch = [{"x": 1, "y": (0.5, np.float32(1))}, {"x": 2.5, "y": (1.5, np.float32(2))}]
    got, want = default_collate(batch), tdata.default_collate(batch)
    np.testing.assert_array_equal(got["x"].numpy(), want["x"].numpy())  # 2.5 survives though batch[0]["x"] is int
    for g, w in zip(got["y"], want["y"]):
        assert _dtype_name(g.dtype) == _dtype_name(w.dtype)
        np.testing.assert_array_equal(g.numpy(), w.numpy())


@pytest.mark.parametrize("make", [np.ones, vt.ones], ids=["numpy", "vt"])
def test_default_collate_unequal_shapes_name_them(make):
    with pytest.raises(RuntimeError):  # PyTorch refuses these too
        tdata.default_collate([torch.ones(2), torch.ones(3)])
    with pytest.raises(ShapeError, match=r"same shape, got \(2,\) at entry 0 and \(3,\) at entry 1"):
        default_collate([make(2), make(3)])


def test_default_collate_numpy_arrays_match_torch():
    batch = [np.arange(6, dtype=np.int32).reshape(2, 3), np.ones((2, 3), np.int32)]
    got, want = default_collate(batch), tdata.default_collate(batch)
    assert _dtype_name(got.dtype) == _dtype_name(want.dtype)
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    with pytest.raises(TypeError, match="dtype <U1"):
        default_collate([np.array(["a"]), np.array(["b"])])


def test_dataloader_rejects_unknown_keyword():
    ds = TensorDataset(vt.arange(10))
    with pytest.raises(TypeError, match="shufle"):
        tdata.DataLoader(tdata.TensorDataset(torch.arange(10)), batch_size=5, shufle=True)
    with pytest.raises(TypeError, match="shufle"):
        DataLoader(ds, batch_size=5, shufle=True)


def test_dataloader_signature_matches_torch():
    ours = inspect.signature(DataLoader.__init__).parameters
    theirs = inspect.signature(tdata.DataLoader.__init__).parameters
    assert [(p.name, p.kind) for p in ours.values()] == [(p.name, p.kind) for p in theirs.values()]
    for name, p in theirs.items():
        if p.default is not inspect.Parameter.empty:
            assert ours[name].default == p.default, name


def test_dataloader_torch_keywords():
    ds = TensorDataset(vt.arange(10))
    dl = DataLoader(ds, batch_size=5, shuffle=True, pin_memory=True, timeout=1.0, worker_init_fn=print,
                    in_order=True, pin_memory_device="")
    assert sorted(sum((b[0].tolist() for b in dl), [])) == list(range(10))
    for kw in ({"prefetch_factor": 2}, {"persistent_workers": True}, {"multiprocessing_context": "spawn"},
               {"timeout": -1}, {"num_workers": -1}, {"batch_size": None, "drop_last": True}):
        with pytest.raises(ValueError):  # PyTorch raises ValueError for each of these without workers
            tdata.DataLoader(tdata.TensorDataset(torch.arange(10)), **kw)
        with pytest.raises(ValueError, match=next(iter(kw))):
            DataLoader(ds, **kw)
    with pytest.raises(NotImplementedError, match="num_workers=2"):
        DataLoader(ds, num_workers=2)


@pytest.mark.parametrize("n", [1, 3, 5, 7])
def test_random_sampler_num_samples_match_torch(n):
    ours = list(RandomSampler(range(3), num_samples=n))
    theirs = list(tdata.RandomSampler(range(3), num_samples=n))
    assert len(RandomSampler(range(3), num_samples=n)) == len(ours) == len(theirs) == n
    # Without replacement: whole permutations first, then the first n % 3 of one more.
    for i in range(0, n - n % 3, 3):
        assert sorted(ours[i:i + 3]) == [0, 1, 2]
    assert len(set(ours[n - n % 3:])) == n % 3


@pytest.mark.parametrize("n", [-1, 0, 2.0])
def test_random_sampler_rejects_bad_num_samples(n):
    msg = f"num_samples should be a positive integer value, but got num_samples={n}"
    with pytest.raises(ValueError, match=msg):
        tdata.RandomSampler(range(3), num_samples=n)
    with pytest.raises(ValueError, match=msg):
        RandomSampler(range(3), num_samples=n)


def test_random_sampler_seeded_generator_repeats():
    g1, g2 = vt.Generator(), vt.Generator()
    g1.manual_seed(3)
    g2.manual_seed(3)
    assert list(RandomSampler(range(5), num_samples=12, generator=g1)) == \
        list(RandomSampler(range(5), num_samples=12, generator=g2))
