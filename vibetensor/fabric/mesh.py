"""DeviceMesh: an n-d array of devices (``init_device_mesh`` lays it out with the placement policy)."""
from __future__ import annotations

import math

from ..core.device import Device, device as _as_device
from .placement import arrange


def _flatten(x, shape_out, depth=0):
    if isinstance(x, (list, tuple)) or (hasattr(x, "tolist") and not isinstance(x, (str, Device))):
        if hasattr(x, "tolist") and not isinstance(x, (list, tuple)):
            x = x.tolist()
        if len(shape_out) <= depth:
            shape_out.append(len(x))
        elif shape_out[depth] != len(x):
            raise ValueError(f"DeviceMesh: ragged device array: {len(x)} entries at depth {depth}, expected "
                             f"{shape_out[depth]}")
        out = []
        for y in x:
            out.extend(_flatten(y, shape_out, depth + 1))
        return out
    if depth != len(shape_out):
        raise ValueError(f"DeviceMesh: ragged device array (a device at depth {depth}, expected depth "
                         f"{len(shape_out)})")
    return [x]


def _resolve(d, device_type):
    if isinstance(d, int) and not isinstance(d, bool):
        typ = device_type or "cuda"
        return _as_device(f"{typ}:{d}")
    return _as_device(d)


def _check_exists(devs):
    if devs[0].type != "cuda":
        return  # cpu:N was checked against VT_CPU_DEVICES when parsed
    from .topo import topology
    topo = topology("cuda")
    known = {d.index for d in topo.devices}
    bad = [str(d) for d in devs if d.index not in known]
    if bad:
        have = ", ".join(f"cuda:{i}" for i in sorted(known)) or "none"
        raise ValueError(f"DeviceMesh: unknown device(s) {bad}: the topology ({topo.source}) has {have}"
                         + ("" if known else f" ({topo.notes[0] if topo.notes else 'no GPU'})"))


class DeviceMesh:
    """``DeviceMesh(devices, axis_names)``: devices as nested lists (or a flat list with ``shape=``).

    Also accepts PyTorch's form ``DeviceMesh("cuda", [[0, 1], [2, 3]], mesh_dim_names=("dp", "tp"))``.
    In one process every device is addressable. Under an initialised multi-process group (one rank per
    process, world size > 1) ``DeviceMesh("cpu"|"cuda", rank array)`` is a mesh over ranks, as in PyTorch:
    each process owns one position, its device ``cpu`` or ``cuda:LOCAL_RANK``; ``process_ranks`` (same
    shape as ``devices``) says the same explicitly. Such a mesh must cover every rank once."""

    def __init__(self, devices, axis_names=None, *, shape=None, mesh_dim_names=None, process_ranks=None):
        device_type = None
        if isinstance(devices, str) and devices in ("cpu", "cuda"):
            device_type, devices = devices, axis_names
            axis_names = None
        if mesh_dim_names is not None:
            axis_names = mesh_dim_names
        dims: list = []
        flat = _flatten(devices, dims)
        if device_type is not None and process_ranks is None and _mp_world() > 1 and flat \
                and all(isinstance(d, int) and not isinstance(d, bool) for d in flat):
            # PyTorch's form under an initialised multi-process group: the ints are ranks
            process_ranks, flat = list(flat), [None] * len(flat)
            if shape is None:
                shape = tuple(dims)
            dims = []
        if shape is not None:
            shape = tuple(int(s) for s in shape)
            if math.prod(shape) != len(flat):
                raise ValueError(f"DeviceMesh: shape {shape} needs {math.prod(shape)} devices, got {len(flat)}")
            dims = list(shape)
        if not flat:
            raise ValueError("DeviceMesh: no devices given")
        if process_ranks is not None and flat and flat[0] is None:
            devs = [_local_device(device_type)] * len(flat)
        else:
            devs = [_resolve(d, device_type) for d in flat]
        types = sorted({d.type for d in devs})
        if len(types) != 1:
            raise ValueError(f"DeviceMesh: devices of mixed types {types} ({[str(d) for d in devs]}); "
                             f"a mesh holds devices of one type")
        if device_type is not None and types[0] != device_type:
            raise ValueError(f"DeviceMesh: device_type {device_type!r} but devices are {types[0]}")
        seen = set()
        for d in (devs if process_ranks is None else ()):
            if d in seen:
                raise ValueError(f"DeviceMesh: device {d} appears more than once in {[str(x) for x in devs]}; "
                                 f"every mesh position needs its own device")
            seen.add(d)
        if process_ranks is None and len(devs) > 1 and any(d.index is None for d in devs):
            raise ValueError(f"DeviceMesh: {[str(d) for d in devs]} mixes plain 'cpu' with indexed devices; "
                             f"set VT_CPU_DEVICES=N and use cpu:0..cpu:N-1")
        _check_exists(devs)
        self.device_type = types[0]
        self.shape = tuple(dims)
        self.devices = tuple(devs)  # row-major
        if axis_names is None:
            axis_names = tuple(f"dim{i}" for i in range(len(dims)))
        if isinstance(axis_names, str):
            axis_names = (axis_names,)
        axis_names = tuple(axis_names)
        if len(axis_names) != len(dims):
            raise ValueError(f"DeviceMesh: {len(axis_names)} axis names {axis_names} for a {len(dims)}-d mesh "
                             f"of shape {tuple(dims)}")
        if len(set(axis_names)) != len(axis_names):
            raise ValueError(f"DeviceMesh: duplicate axis names {axis_names}")
        self.mesh_dim_names = axis_names
        if process_ranks is not None:
            pr: list = []
            ranks = _flatten(process_ranks, pr)
            if len(ranks) != len(devs):
                raise ValueError(f"DeviceMesh: process_ranks has {len(ranks)} entries for {len(devs)} devices")
            self.process_ranks = tuple(int(r) for r in ranks)
            _check_ranks(self)
        else:
            self.process_ranks = None
        self._groups = None

    # ---- shape and coordinates
    @property
    def ndim(self) -> int:
        return len(self.shape)

    def size(self, dim: int | None = None) -> int:
        return math.prod(self.shape) if dim is None else self.shape[self._axis(dim)]

    def _axis(self, dim) -> int:
        if isinstance(dim, str):
            if dim not in self.mesh_dim_names:
                raise KeyError(f"mesh has no axis {dim!r}; axes: {self.mesh_dim_names}")
            return self.mesh_dim_names.index(dim)
        if not -self.ndim <= dim < self.ndim:
            raise IndexError(f"mesh axis {dim} out of range for a {self.ndim}-d mesh")
        return dim % self.ndim

    def coords(self, k: int) -> tuple:
        out = []
        for s in reversed(self.shape):
            out.append(k % s)
            k //= s
        return tuple(reversed(out))

    def flat_index(self, coords) -> int:
        k = 0
        for c, s in zip(coords, self.shape):
            k = k * s + c
        return k

    def device_at(self, *coords) -> Device:
        if len(coords) == 1 and isinstance(coords[0], tuple):
            coords = coords[0]
        return self.devices[self.flat_index(coords)]

    @property
    def mesh(self):
        """The devices as nested lists."""
        from .placement import _nest
        return _nest(list(self.devices), self.shape) if self.shape else list(self.devices)

    def tolist(self):
        return self.mesh

    # ---- processes
    def _my_rank(self) -> int:
        try:
            from .. import collectives
            if collectives.is_initialized():
                return collectives.get_rank()
        except Exception:  # noqa: BLE001 - collectives absent or not initialised
            pass
        return 0

    @property
    def is_multi_process(self) -> bool:
        return self.process_ranks is not None and len(set(self.process_ranks)) > 1

    def local_indices(self) -> list:
        """Flat mesh positions whose shard this process holds (every position in one process)."""
        if not self.is_multi_process:
            return list(range(len(self.devices)))
        me = self._my_rank()
        return [k for k, r in enumerate(self.process_ranks) if r == me]

    def axis_group(self, m: int):
        """The process group of the ranks along mesh axis ``m`` through this rank (made once per mesh:
        every rank creates every axis group in the same order, as new_group requires)."""
        if self._groups is None:
            from .. import collectives
            groups = []
            for ax in range(self.ndim):
                mine = None
                for k in range(self.size()):
                    c = self.coords(k)
                    if c[ax] != 0:
                        continue
                    ranks = [self.process_ranks[self.flat_index(c[:ax] + (i,) + c[ax + 1:])]
                             for i in range(self.shape[ax])]
                    g = collectives.new_group(ranks)
                    if self._my_rank() in ranks:
                        mine = g
                groups.append(mine)
            self._groups = groups
        return self._groups[m]

    def addressable_devices(self) -> tuple:
        if self.process_ranks is None:
            return self.devices
        me = self._my_rank()
        return tuple(d for d, r in zip(self.devices, self.process_ranks) if r == me)

    def __eq__(self, other):
        return (isinstance(other, DeviceMesh) and other.devices == self.devices and other.shape == self.shape
                and other.process_ranks == self.process_ranks)

    def __hash__(self):
        return hash((self.devices, self.shape))

    def __repr__(self):
        ids = [d.index if d.index is not None else d.type for d in self.devices]
        from .placement import _nest
        return f"DeviceMesh('{self.device_type}', {_nest(ids, self.shape)}, mesh_dim_names={self.mesh_dim_names})"


def _mp_world() -> int:
    """World size of an initialised multi-process default group (one rank per process), else 0."""
    try:
        from .. import collectives
        if not collectives.is_initialized():
            return 0
        g = collectives.default_group()
        return g.size() if len(g.local_ranks) == 1 else 0
    except Exception:  # noqa: BLE001 - collectives absent
        return 0


def _local_device(device_type):
    """This process's device in a multi-process mesh: cpu, or cuda:local_rank (its visible GPU)."""
    if device_type == "cpu":
        return Device("cpu")
    import os
    lr = int(os.environ.get("LOCAL_RANK", os.environ.get("VT_LOCAL_RANK", "0")))
    from ..core import backend as _be
    n = _be.cupy_module().cuda.runtime.getDeviceCount()
    return Device("cuda", lr % max(n, 1))


def _check_ranks(mesh):
    ranks = mesh.process_ranks
    if len(set(ranks)) != len(ranks):
        raise NotImplementedError(
            f"DeviceMesh: ranks {list(ranks)} repeat: several devices per process in a multi-process mesh are not "
            f"supported; give each process one mesh position")
    n = _mp_world()
    if n == 0:
        raise NotImplementedError(
            f"DeviceMesh over ranks {list(ranks)} spans several processes: multi-process meshes need "
            f"vibetensor.collectives (call vt.collectives.init_process_group('mpi') first)")
    bad = [r for r in ranks if not 0 <= r < n]
    if bad:
        raise ValueError(f"DeviceMesh: ranks {bad} are outside the default process group (world size {n}); "
                         f"use ranks 0..{n - 1}")
    if len(ranks) != n:
        raise NotImplementedError(
            f"DeviceMesh over ranks {list(ranks)}: a multi-process mesh must cover every rank of the default group "
            f"(world size {n}); meshes over a subset of ranks are not supported")


def init_device_mesh(device_type: str, mesh_shape, *, mesh_dim_names=None, devices=None) -> DeviceMesh:
    """A mesh of ``mesh_shape`` over the local devices of ``device_type`` ("cuda" or "cpu"), laid out by the
    placement policy: inner axes on cliques / NVLink groups, each axis's rings ordered along NVLink.
    Under an initialised multi-process group (world size > 1) the mesh is over the ranks instead (rank r at
    flat position r), one device per process."""
    if isinstance(mesh_shape, int):
        mesh_shape = (mesh_shape,)
    mesh_shape = tuple(int(s) for s in mesh_shape)
    if devices is None and _mp_world() > 1:
        if math.prod(mesh_shape) != _mp_world():
            raise ValueError(f"init_device_mesh: mesh shape {mesh_shape} has {math.prod(mesh_shape)} positions but "
                             f"the process group has {_mp_world()} ranks")
        return DeviceMesh(device_type, list(range(_mp_world())), shape=mesh_shape, mesh_dim_names=mesh_dim_names)
    if any(s <= 0 for s in mesh_shape):
        raise ValueError(f"init_device_mesh: mesh_shape {mesh_shape} must have positive sizes")
    if device_type not in ("cpu", "cuda"):
        raise ValueError(f"init_device_mesh: device_type must be 'cpu' or 'cuda', got {device_type!r}")
    if devices is None:
        if device_type == "cpu":
            from ..core.device import cpu_devices
            devices = cpu_devices()
        else:
            from .topo import topology
            devices = [Device("cuda", d.index) for d in topology("cuda").devices]
            if not devices:
                raise ValueError(f"init_device_mesh('cuda', {mesh_shape}): no CUDA device is visible "
                                 f"({topology('cuda').notes[0] if topology('cuda').notes else 'no GPU'})")
    need = math.prod(mesh_shape)
    if need > len(devices):
        hint = " (set VT_CPU_DEVICES=N for virtual CPU devices)" if device_type == "cpu" else ""
        raise ValueError(f"init_device_mesh: mesh shape {mesh_shape} needs {need} {device_type} devices, "
                         f"{len(devices)} available{hint}")
    layout = arrange(devices, mesh_shape)
    return DeviceMesh(layout, mesh_dim_names, shape=mesh_shape)
