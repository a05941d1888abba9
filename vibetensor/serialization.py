"""vt.save / vt.load: checkpoints in the safetensors format, written atomically, never unpickled.

A checkpoint is a (nested) dict/list/tuple of tensors, numbers, strings, bools and None -- a model's
state_dict, an optimizer's, or ``{"model": ..., "optim": ..., "step": ...}``. Tensors are stored as
safetensors tensors named by their dotted key path (``model.fc.weight``, ``optim.state.0.exp_avg``), so a
flat state_dict file is a plain safetensors file any tool reads. Everything else (the nesting, dict key
types, the numbers and strings, each tensor's device) is JSON in the header metadata under
``vt_structure``. A plain safetensors file (e.g. from ``safetensors.torch.save_file``) loads as a flat
dict of tensors.

Writes go to a temporary file in the target's directory (a symlink's target's), are fsynced, then renamed
over the target (``os.replace``), so a crash or error mid-write leaves the previous file intact. A target
that opening for writing would refuse (read-only, a directory, a missing directory) is refused first.
"""
from __future__ import annotations

import io
import json
import os
import tempfile

import numpy as np

from .core import backend as _be
from .core import dtype as _dt
from .core.device import Device
from .core.device import device as _as_device
from .core.tensor import Tensor
from .errors import CheckpointError

_FORMAT_VERSION = "1"
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit
_ST_DTYPES = {
    "BOOL": _dt.bool_, "U8": _dt.uint8, "I8": _dt.int8, "I16": _dt.int16, "I32": _dt.int32, "I64": _dt.int64,
    "F16": _dt.float16, "BF16": _dt.bfloat16, "F32": _dt.float32, "F64": _dt.float64,
}


# ------------------------------------------------------------------------------------------------ encode
class _Encoder:
    def __init__(self):
        self.arrays: dict = {}   # safetensors name -> contiguous little-endian numpy array
        self._used: set = set()
        self._open: set = set()  # ids of the containers being encoded (cycle check)

    def _name(self, path):
        base = ".".join(str(p) for p in path) or "tensor"
        name, n = base, 1
        while name in self._used:  # {"a.b": x, "a": {"b": y}} would collide
            name = f"{base}#{n}"
            n += 1
        self._used.add(name)
        return name

    def encode(self, obj, path):
        if isinstance(obj, Tensor):
            return self._tensor(obj, path)
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, (int, float)):
            return obj
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            from .core.factories import tensor
            return self._tensor(tensor(obj), path)
        if isinstance(obj, (dict, list, tuple)):
            if id(obj) in self._open:  # json (and any reader) needs a tree: a container inside itself has no end
                raise ValueError(f"vt.save: the object contains itself at '{_fmt(path)}'; checkpoints hold trees "
                                 f"of dicts/lists/tuples, not cycles")
            self._open.add(id(obj))
            try:
                return self._container(obj, path)
            finally:
                self._open.discard(id(obj))
        if isinstance(obj, _dt.dtype):
            return {"__dtype__": obj.name}
        if isinstance(obj, Device):
            return {"__device__": str(obj)}
        raise TypeError(f"vt.save: cannot store a {type(obj).__name__} at '{_fmt(path)}'; checkpoints hold "
                        f"tensors, numbers, strings, bools, None, dtypes, devices and dicts/lists/tuples of them "
                        f"(objects are never pickled)")

    def _container(self, obj, path):
        if isinstance(obj, dict):
            items = []
            for k, v in obj.items():
                if not (k is None or isinstance(k, (str, int, float, bool))):
                    raise TypeError(f"vt.save: dict keys must be str, int, float, bool or None; got a "
                                    f"{type(k).__name__} key at '{_fmt(path)}'")
                items.append([k, self.encode(v, path + [k])])
            return {"__dict__": items}
        if isinstance(obj, tuple):
            return {"__tuple__": [self.encode(v, path + [i]) for i, v in enumerate(obj)]}
        return [self.encode(v, path + [i]) for i, v in enumerate(obj)]

    def _tensor(self, t, path):
        if t._is_sharded:
            t = t.full_tensor()
        arr = _be.to_numpy(t._data)
        if not arr.flags.c_contiguous:  # (np.ascontiguousarray would turn 0-d into 1-d)
            arr = arr.copy(order="C")
        if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and not np.little_endian):
            arr = arr.byteswap().view(arr.dtype.newbyteorder("<"))
        name = self._name(path)
        self.arrays[name] = arr
        return {"__tensor__": name, "device": str(t.device)}


def _fmt(path):
    return ".".join(str(p) for p in path) or "<root>"


def _serialize(obj) -> bytes:
    import safetensors
    enc = _Encoder()
    structure = enc.encode(obj, [])
    specs = {name: safetensors.TensorSpec(dtype=a.dtype.name, shape=list(a.shape), data_ptr=a.ctypes.data,
                                          data_len=a.nbytes)
             for name, a in enc.arrays.items()}
    # "format": "pt" -- the tensors follow PyTorch's layouts and names, and loaders such as Hugging Face
    # transformers refuse safetensors files without it
    meta = {"format": "pt", "vt_format": _FORMAT_VERSION, "vt_structure": json.dumps(structure)}
    blob = safetensors.serialize(specs, metadata=meta)
    del enc  # the arrays had to stay alive until serialize returned
    return blob


def _target(path) -> str:
    """The file ``vt.save`` replaces: a symlink's target (the link stays a link), checked the way opening it
    for writing would be -- the rename alone needs only the directory's permission, and would replace a
    read-only file or a directory's entry without a word."""
    given = os.fspath(path)
    if not isinstance(given, str):
        given = os.fsdecode(given)
    if not given:
        raise FileNotFoundError("vt.save: the path is empty; pass a file name such as 'checkpoint.safetensors'")
    path = os.path.realpath(given)
    d = os.path.dirname(path)
    if not os.path.isdir(d):
        raise FileNotFoundError(f"vt.save: cannot write {given!r}: directory {d!r} does not exist; create it "
                                f"first (os.makedirs)")
    if os.path.isdir(path):
        raise IsADirectoryError(f"vt.save: {given!r} is a directory; pass a file path inside it")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise PermissionError(f"vt.save: {given!r} is not writable (mode {os.stat(path).st_mode & 0o777:o}); "
                              f"the existing checkpoint was left as it is")
    if not os.access(d, os.W_OK | os.X_OK):
        raise PermissionError(f"vt.save: cannot create files in directory {d!r} to write {given!r}")
    return path


def _atomic_write(path, blob: bytes):
    path = _target(path)
    d = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        try:
            mode = os.stat(path).st_mode & 0o777
        except FileNotFoundError:
            mode = 0o644
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def save(obj, f) -> None:
    """Write ``obj`` (nested dicts/lists/tuples of tensors, numbers, strings) to ``f`` (a path, written
    atomically, or a binary file object) in the safetensors format."""
    if hasattr(f, "write") and isinstance(f, io.TextIOBase):
        raise TypeError(f"vt.save: {getattr(f, 'name', 'the file object')!r} is open in text mode; open it with "
                        f"'wb' (checkpoints are binary)")
    blob = _serialize(obj)
    if hasattr(f, "write"):
        f.write(blob)
        return
    _atomic_write(f, blob)


# ------------------------------------------------------------------------------------------------ decode
def _looks_pickled(data: bytes) -> bool:
    return data[:4] == b"PK\x03\x04" or (data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"))


def _read_header(data: bytes, where: str) -> dict:
    def bad(msg):
        if _looks_pickled(data):  # checked only once parsing failed: a valid header may start with these bytes
            return CheckpointError(f"{where}: this is a pickle/zip checkpoint (torch.save), not safetensors; "
                                   f"vibetensor never unpickles -- convert it with safetensors.torch.save_file")
        return CheckpointError(f"{where}: {msg}")

    if len(data) < 8:
        raise bad(f"truncated checkpoint: {len(data)} bytes, shorter than the 8-byte safetensors header length")
    n = int.from_bytes(data[:8], "little")
    if n > _MAX_HEADER:
        raise bad(f"corrupt checkpoint: header length {n} is implausible (not a safetensors file?)")
    if 8 + n > len(data):
        raise bad(f"truncated checkpoint: the header needs {n} bytes but the file holds only {len(data) - 8} "
                  f"after the length field")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise bad(f"corrupt checkpoint: the safetensors header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise bad(f"corrupt checkpoint: the header is a JSON {type(header).__name__}, expected an object")
    return header


def _map_device(saved: str, map_location):
    if map_location is None:
        return _as_device(saved)
    if isinstance(map_location, dict):
        return _as_device(map_location.get(saved, saved))
    return _as_device(map_location)


def _place(t, saved_dev: str, map_location, name, where):
    if callable(map_location) and not isinstance(map_location, (str, Device, dict)):
        out = map_location(t, saved_dev)
        return t if out is None else out
    dev = _map_device(saved_dev, map_location)
    if dev == t.device:
        return t
    try:
        return t.to(dev)
    except Exception as e:
        raise RuntimeError(f"vt.load({where}): tensor '{name}' was saved on {saved_dev} and cannot be restored "
                           f"to {dev}: {e}; pass map_location='cpu' (or another device) to load it elsewhere") from None


def load(f, map_location=None, *, weights_only=None, mmap=None):
    """Read a checkpoint written by ``vt.save`` (or any safetensors file) from a path or binary file object.

    ``map_location``: None (each tensor goes back to the device it was saved from; plain safetensors files
    load on CPU), a device (``"cpu"``, ``"cuda:0"``), a dict remapping saved device names, or a callable
    ``fn(tensor, saved_device) -> tensor``. ``weights_only``/``mmap`` are accepted for torch.load
    compatibility; loading never executes code either way. Corrupt or truncated files raise CheckpointError.
    """
    import safetensors

    from .core.factories import from_numpy
    if hasattr(f, "read"):
        where = getattr(f, "name", "<file object>")
        if isinstance(f, io.TextIOBase):
            raise TypeError(f"vt.load: {where!r} is open in text mode; open it with 'rb' (checkpoints are binary)")
        data = f.read()
    else:
        where = os.fspath(f)
        with open(where, "rb") as fh:
            data = fh.read()
    header = _read_header(data, where)
    try:
        entries = safetensors.deserialize(data)
    except Exception as e:  # SafetensorError: bad offsets, sizes, dtypes, overlapping or truncated data
        raise CheckpointError(f"{where}: corrupt or truncated safetensors checkpoint: {e}") from None
    tensors = {}
    for name, info in entries:
        dt = _ST_DTYPES.get(info["dtype"])
        if dt is None:
            raise CheckpointError(f"{where}: tensor '{name}' has dtype {info['dtype']}, which vibetensor does not "
                                  f"support (supported: {', '.join(_ST_DTYPES)})")
        arr = np.frombuffer(info["data"], dtype=dt.np).reshape(info["shape"])
        tensors[name] = from_numpy(arr)
    meta = header.get("__metadata__") or {}
    if "vt_structure" not in meta:
        plain_dev = "cpu"
        return {name: _place(t, plain_dev, map_location, name, where) for name, t in tensors.items()}
    try:
        structure = json.loads(meta["vt_structure"])
    except ValueError as e:
        raise CheckpointError(f"{where}: corrupt checkpoint: the vt_structure metadata is not valid JSON ({e})") \
            from None
    return _decode(structure, tensors, map_location, where)


def _corrupt(where, what, value):
    return CheckpointError(f"{where}: corrupt checkpoint: {what} {value!r} in vt_structure")


def _structure_device(value, where):
    try:
        return _as_device(value)
    except (TypeError, ValueError, RuntimeError):
        raise _corrupt(where, "unknown device", value) from None


def _decode(node, tensors, map_location, where):
    if isinstance(node, list):
        return [_decode(v, tensors, map_location, where) for v in node]
    if not isinstance(node, dict):
        return node
    if "__tensor__" in node:
        name = node["__tensor__"]
        if not isinstance(name, str) or name not in tensors:
            raise CheckpointError(f"{where}: corrupt checkpoint: the structure refers to tensor '{name}', which the "
                                  f"file does not contain")
        saved = node.get("device", "cpu")
        if not isinstance(saved, str):
            raise _corrupt(where, "device", saved)
        _structure_device(saved, where)  # the file's own word: a bad one is corruption, not the caller's error
        return _place(tensors[name], saved, map_location, name, where)
    if "__dict__" in node:
        items = node["__dict__"]
        if not isinstance(items, list) or not all(isinstance(kv, list) and len(kv) == 2 for kv in items):
            raise CheckpointError(f"{where}: corrupt checkpoint: a dict entry in vt_structure is not a "
                                  f"[key, value] pair")
        out = {}
        for k, v in items:
            if isinstance(k, (list, dict)):
                raise CheckpointError(f"{where}: corrupt checkpoint: unhashable dict key {k!r} in vt_structure")
            out[k] = _decode(v, tensors, map_location, where)
        return out
    if "__tuple__" in node:
        items = node["__tuple__"]
        if not isinstance(items, list):
            raise _corrupt(where, "tuple", items)
        return tuple(_decode(v, tensors, map_location, where) for v in items)
    if "__dtype__" in node:
        try:
            return _dt.as_dtype(node["__dtype__"])
        except (TypeError, ValueError, KeyError):
            raise _corrupt(where, "unknown dtype", node["__dtype__"]) from None
    if "__device__" in node:
        return _structure_device(node["__device__"], where)
    raise CheckpointError(f"{where}: corrupt checkpoint: unknown node {sorted(node)} in vt_structure")
