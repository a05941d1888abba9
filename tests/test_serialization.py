"""vt.save / vt.load: safetensors round trips, nesting, atomic writes, corrupt files, torch interop."""
import io
import json
import math
import os

import ml_dtypes
import numpy as np
import pytest
import safetensors
import safetensors.numpy
import safetensors.torch
import torch

import vibetensor as vt
from vibetensor import nn

DTYPES = [vt.float16, vt.bfloat16, vt.float32, vt.float64, vt.int8, vt.int16, vt.int32, vt.int64, vt.uint8, vt.bool]


def sample(dtype, shape, seed=0):
    r = np.random.RandomState(seed)
    if dtype is vt.bool:
        return vt.from_numpy(np.asarray(r.rand(*shape) > 0.5))
    if dtype.is_floating_point:
        return vt.from_numpy(np.asarray(r.randn(*shape) * 100).astype(dtype.np))
    info = np.iinfo(dtype.np)
    return vt.from_numpy(r.randint(info.min, info.max, size=shape, dtype=np.int64).astype(dtype.np))


def bits(t):
    a = t.numpy()
    return a.view(np.uint8) if a.dtype.itemsize == 1 else a.view(f"u{a.dtype.itemsize}")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("shape", [(), (0, 3), (3, 5, 2)])
def test_every_dtype_round_trips_exactly(tmp_path, dtype, shape):
    t = sample(dtype, shape)
    vt.save({"t": t}, tmp_path / "x.safetensors")
    out = vt.load(tmp_path / "x.safetensors")["t"]
    assert out.dtype == dtype and tuple(out.shape) == shape
    np.testing.assert_array_equal(bits(out), bits(t))  # bit-exact, bfloat16 included


def test_special_float_values_and_noncontiguous(tmp_path):
    a = vt.tensor([0.0, -0.0, math.inf, -math.inf, math.nan, 1e-40], dtype=vt.float32)
    b = vt.arange(12, dtype=vt.float64).reshape(3, 4).t()  # non-contiguous view
    vt.save({"a": a, "b": b}, tmp_path / "f.st")
    d = vt.load(tmp_path / "f.st")
    np.testing.assert_array_equal(bits(d["a"]), bits(a))
    np.testing.assert_array_equal(d["b"].numpy(), b.numpy())


def test_nested_structure_round_trip(tmp_path):
    obj = {
        "model": {"fc.weight": vt.ones(2, 3), "fc.bias": vt.zeros(2)},
        "optim": {"state": {0: {"step": vt.tensor(3.0), "exp_avg": vt.full((2,), 0.5)}},
                  "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "params": [0, 1], "amsgrad": False,
                                    "foreach": None, "name": "main"}]},
        "step": 17, "loss": 0.25, "inf": math.inf, "tags": ["a", 2, None, True], "dtype": vt.bfloat16,
        "dev": vt.device("cpu"), 3.5: "float key", "tuple": (1, (2, vt.ones(1))),
    }
    vt.save(obj, tmp_path / "ck.safetensors")
    back = vt.load(tmp_path / "ck.safetensors")
    assert list(back) == list(obj)
    assert back["step"] == 17 and back["loss"] == 0.25 and back["inf"] == math.inf
    assert back["tags"] == ["a", 2, None, True] and back["dtype"] is vt.bfloat16
    assert back["dev"] == vt.device("cpu") and back[3.5] == "float key"
    assert isinstance(back["tuple"], tuple) and back["tuple"][0] == 1 and back["tuple"][1][1].tolist() == [1.0]
    g = back["optim"]["param_groups"][0]
    assert g["betas"] == (0.9, 0.999) and g["params"] == [0, 1] and g["foreach"] is None
    assert list(back["optim"]["state"]) == [0]  # int keys stay ints
    assert back["optim"]["state"][0]["step"].item() == 3.0
    np.testing.assert_array_equal(back["model"]["fc.weight"].numpy(), np.ones((2, 3), np.float32))


def test_model_state_dict_is_a_plain_safetensors_file(tmp_path):
    m = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3))
    vt.save(m.state_dict(), tmp_path / "m.safetensors")
    # any safetensors reader sees the dotted names
    tsd = safetensors.torch.load_file(str(tmp_path / "m.safetensors"))
    with safetensors.safe_open(str(tmp_path / "m.safetensors"), "np") as f:
        assert f.metadata()["format"] == "pt"  # what Hugging Face loaders check
    assert sorted(tsd) == sorted(m.state_dict())
    np.testing.assert_array_equal(tsd["0.weight"].numpy(), m[0].weight.detach().numpy())
    m2 = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3))
    m2.load_state_dict(vt.load(tmp_path / "m.safetensors"))  # load_state_dict accepts what vt.load returns
    np.testing.assert_array_equal(m2[0].weight.detach().numpy(), m[0].weight.detach().numpy())
    tm = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    tm.load_state_dict(tsd)  # and torch can load a vt model's weights


def test_file_written_by_safetensors_torch_loads(tmp_path):
    src = {
        "w.bf16": torch.randn(3, 4).to(torch.bfloat16), "w.f16": torch.randn(5).half(),
        "w.f32": torch.randn(2, 2), "w.f64": torch.randn(3, dtype=torch.float64),
        "idx": torch.arange(6).reshape(2, 3), "mask": torch.tensor([True, False]), "u8": torch.arange(4).byte(),
    }
    safetensors.torch.save_file(src, str(tmp_path / "t.safetensors"), metadata={"format": "pt"})
    out = vt.load(tmp_path / "t.safetensors")
    assert sorted(out) == sorted(src)
    assert out["w.bf16"].dtype == vt.bfloat16 and out["idx"].dtype == vt.int64 and out["mask"].dtype == vt.bool
    for k, t in src.items():
        want = t.view(torch.int16).numpy() if t.dtype == torch.bfloat16 else t.numpy()
        got = out[k].numpy().view(np.int16) if t.dtype == torch.bfloat16 else out[k].numpy()
        np.testing.assert_array_equal(got, want)


def test_map_location_and_file_objects(tmp_path):
    t = vt.randn(3)
    vt.save({"t": t}, tmp_path / "a.st")
    assert vt.load(tmp_path / "a.st", map_location="cpu")["t"].device == vt.device("cpu")
    assert vt.load(tmp_path / "a.st", map_location={"cpu": "cpu"})["t"].device == vt.device("cpu")
    seen = []
    vt.load(tmp_path / "a.st", map_location=lambda x, dev: seen.append(dev))
    assert seen == ["cpu"]
    buf = io.BytesIO()
    vt.save({"t": t, "n": 1}, buf)
    buf.seek(0)
    d = vt.load(buf)
    np.testing.assert_array_equal(d["t"].numpy(), t.numpy())
    assert d["n"] == 1


def test_colliding_dotted_names_and_parameters(tmp_path):
    obj = {"a.b": vt.ones(1), "a": {"b": vt.zeros(1)}, "p": nn.Parameter(vt.ones(2))}
    vt.save(obj, tmp_path / "c.st")
    back = vt.load(tmp_path / "c.st")
    assert back["a.b"].tolist() == [1.0] and back["a"]["b"].tolist() == [0.0]
    assert back["p"].tolist() == [1.0, 1.0] and not back["p"].requires_grad


def test_unsupported_object_names_its_path(tmp_path):
    with pytest.raises(TypeError, match=r"cannot store a object at 'optim\.state\.0\.fn'"):
        vt.save({"optim": {"state": {0: {"fn": object()}}}}, tmp_path / "bad.st")
    assert not (tmp_path / "bad.st").exists()


def _listing(d):
    return sorted(os.listdir(d))


def test_atomic_write_failure_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "ck.safetensors"
    vt.save({"v": vt.ones(3), "step": 1}, path)
    before = path.read_bytes()

    def boom(fd):
        raise OSError("disk on fire")
    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk on fire"):
        vt.save({"v": vt.zeros(3), "step": 2}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert _listing(tmp_path) == ["ck.safetensors"]  # the temp file was removed
    assert vt.load(path)["step"] == 1

    def bad_replace(a, b):
        raise OSError("rename failed")
    monkeypatch.setattr(os, "replace", bad_replace)
    with pytest.raises(OSError, match="rename failed"):
        vt.save({"v": vt.zeros(3), "step": 3}, path)
    monkeypatch.undo()
    assert vt.load(path)["step"] == 1 and _listing(tmp_path) == ["ck.safetensors"]
    vt.save({"v": vt.zeros(3), "step": 4}, path)  # a successful overwrite replaces it
    assert vt.load(path)["step"] == 4


@pytest.mark.parametrize("cut", [0, 5, 8, 20, -1, -7])
def test_truncated_file_raises_checkpoint_error(tmp_path, cut):
    path = tmp_path / "full.st"
    vt.save({"w": vt.randn(4, 4), "step": 3}, path)
    data = path.read_bytes()
    bad = tmp_path / "trunc.st"
    bad.write_bytes(data[:cut] if cut >= 0 else data[:len(data) + cut])
    with pytest.raises(vt.CheckpointError, match="trunc.st") as ei:
        vt.load(bad)
    assert "truncated" in str(ei.value) or "corrupt" in str(ei.value)


def test_corrupt_files_raise_checkpoint_error(tmp_path):
    garbage = tmp_path / "garbage.st"
    garbage.write_bytes(os.urandom(64))
    with pytest.raises(vt.CheckpointError, match="garbage.st"):
        vt.load(garbage)

    hdr = b"{not json"
    badjson = tmp_path / "badjson.st"
    badjson.write_bytes(len(hdr).to_bytes(8, "little") + hdr)
    with pytest.raises(vt.CheckpointError, match="not valid JSON"):
        vt.load(badjson)

    # header promises more data than the file has
    h = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    short = tmp_path / "short.st"
    short.write_bytes(len(h).to_bytes(8, "little") + h + b"\0" * 8)
    with pytest.raises(vt.CheckpointError, match="short.st"):
        vt.load(short)

    torch_pickle = tmp_path / "model.pt"
    torch.save({"w": torch.ones(2)}, str(torch_pickle))
    with pytest.raises(vt.CheckpointError, match="never unpickles"):
        vt.load(torch_pickle)

    dangling = tmp_path / "dangling.st"
    safetensors.numpy.save_file({"x": np.ones(2, np.float32)}, str(dangling),
                                metadata={"vt_structure": json.dumps({"__dict__": [["y", {"__tensor__": "y"}]]})})
    with pytest.raises(vt.CheckpointError, match="refers to tensor 'y'"):
        vt.load(dangling)

    badstruct = tmp_path / "badstruct.st"
    safetensors.numpy.save_file({"x": np.ones(2, np.float32)}, str(badstruct), metadata={"vt_structure": "{oops"})
    with pytest.raises(vt.CheckpointError, match="vt_structure"):
        vt.load(badstruct)

    u16 = tmp_path / "u16.st"
    safetensors.numpy.save_file({"x": np.ones(2, np.uint16)}, str(u16))
    with pytest.raises(vt.CheckpointError, match="U16"):
        vt.load(u16)


def test_bfloat16_model_round_trip(tmp_path):
    m = nn.Linear(8, 4).bfloat16()
    vt.save(m.state_dict(), tmp_path / "bf.st")
    d = vt.load(tmp_path / "bf.st")
    assert d["weight"].numpy().dtype == np.dtype(ml_dtypes.bfloat16)
    np.testing.assert_array_equal(bits(d["weight"]), bits(m.weight.detach()))


@pytest.mark.gpu
def test_cuda_tensors_round_trip(tmp_path):
    t = vt.randn(3, 4, device="cuda")
    vt.save({"t": t, "bf": t.to(vt.bfloat16)}, tmp_path / "g.st")
    back = vt.load(tmp_path / "g.st")
    assert back["t"].device == t.device
    np.testing.assert_array_equal(back["t"].cpu().numpy(), t.cpu().numpy())
    cpu = vt.load(tmp_path / "g.st", map_location="cpu")
    assert cpu["t"].device == vt.device("cpu")


def test_header_starting_like_a_pickle_still_loads(tmp_path):
    """A valid header whose length bytes begin 0x80 0x02 (length 640) must not be mistaken for a pickle."""
    for extra in range(400, 700):
        safetensors.numpy.save_file({"a": np.ones(1, np.float32)}, str(tmp_path / "p.st"),
                                    metadata={"k": "y" * extra})
        data = (tmp_path / "p.st").read_bytes()
        if data[:2] == b"\x80\x02":
            break
    else:
        pytest.skip("could not hit a 640-byte header")
    assert vt.load(tmp_path / "p.st")["a"].tolist() == [1.0]
    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.ones(2)}, str(legacy), _use_new_zipfile_serialization=False)
    with pytest.raises(vt.CheckpointError, match="never unpickles"):
        vt.load(legacy)


def test_save_through_a_symlink_replaces_its_target(tmp_path):
    real, link = tmp_path / "real.st", tmp_path / "link.st"
    vt.save({"w": vt.ones(2)}, real)
    link.symlink_to(real)
    vt.save({"w": vt.zeros(2)}, link)
    assert link.is_symlink() and vt.load(real)["w"].tolist() == [0.0, 0.0]


@pytest.mark.parametrize("where", ["", "missing/x.st", "."])
def test_save_to_a_bad_path_names_it(tmp_path, where):
    target = "" if where == "" else str(tmp_path / where)
    with pytest.raises((FileNotFoundError, IsADirectoryError)) as e:
        vt.save({"a": 1}, target)
    msg = str(e.value)
    assert msg.startswith("vt.save:") and (where == "" or repr(target) in msg) and ".tmp" not in msg
    assert [p.name for p in tmp_path.iterdir()] == []


_READ_ONLY = """
import os, sys, vibetensor as vt
p = sys.argv[1]
try:
    vt.save({"w": vt.zeros(2)}, p)
except PermissionError as e:
    print("refused:", e)
print(vt.load(p)["w"].tolist())
"""


def test_save_refuses_a_read_only_checkpoint(tmp_path):
    """As open(path, 'wb') would: the rename alone needs only the directory's permission."""
    import subprocess
    import shutil
    import sys
    p = tmp_path / "ro.st"
    vt.save({"w": vt.ones(2)}, p)
    p.chmod(0o444)
    cmd = [sys.executable, "-c", _READ_ONLY, str(p)]
    if os.geteuid() == 0:  # root writes anything: drop the capability that lets it
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv")
        cmd = ["setpriv", "--inh-caps=-dac_override,-dac_read_search,-fowner",
               "--bounding-set=-dac_override,-dac_read_search,-fowner"] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "refused: vt.save: " in out.stdout and "is not writable (mode 444)" in out.stdout
    assert out.stdout.strip().endswith("[1.0, 1.0]")  # the old checkpoint, intact


def test_text_mode_files_are_refused_with_the_fix(tmp_path):
    p = tmp_path / "x.st"
    with open(tmp_path / "t.txt", "w") as f, pytest.raises(TypeError, match="open it with 'wb'"):
        vt.save({"a": vt.ones(1)}, f)
    vt.save({"a": vt.ones(1)}, p)
    with open(p, "r") as f, pytest.raises(TypeError, match="open it with 'rb'"):
        vt.load(f)


def test_a_container_holding_itself_is_refused_but_shared_ones_are_fine(tmp_path):
    d = {"x": vt.ones(1)}
    d["self"] = d
    with pytest.raises(ValueError, match="contains itself at 'self'"):
        vt.save(d, tmp_path / "c.st")
    shared = [1, vt.ones(2)]
    vt.save({"a": shared, "b": (shared, shared)}, tmp_path / "s.st")
    back = vt.load(tmp_path / "s.st")
    assert back["a"][0] == 1 and back["b"][1][1].tolist() == [1.0, 1.0]


@pytest.mark.parametrize("structure", [
    {"__tensor__": "w", "device": "bogus"}, {"__tensor__": "w", "device": 3}, {"__tensor__": 5},
    {"__dtype__": "nope"}, {"__device__": "zz"}, {"__tuple__": 7}, {"__dict__": 5},
])
def test_crafted_structure_raises_checkpoint_error(tmp_path, structure):
    p = tmp_path / "c.st"
    safetensors.numpy.save_file({"w": np.ones(2, np.float32)}, str(p),
                                metadata={"vt_structure": json.dumps(structure), "vt_format": "1"})
    with pytest.raises(vt.errors.CheckpointError, match="corrupt checkpoint"):
        vt.load(p)
