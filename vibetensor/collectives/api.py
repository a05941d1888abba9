"""Process-group lifetime: init_process_group, new_group, destroy_process_group, and the default group.

Backends (strings at the edge; ``auto`` picks):
  mpi    one rank per process, mpi4py; CPU arrays, device arrays when MPI is CUDA-aware, else staged
  nccl   CUDA tensors through NCCL (unique id broadcast over MPI), CPU tensors through MPI
  ipc    CUDA tensors of one host across processes through CUDA IPC (several ranks may share a GPU)
  local  one process, one rank per device (virtual CPU devices VT_CPU_DEVICES=N, or CUDA devices)
"""
from __future__ import annotations

import threading
import time

from .. import observe
from ..core.device import Device, cpu_devices, device as _as_device
from .errors import CollectiveError, CollectiveTimeout
from .group import ProcessGroup
from .work import poll

BACKENDS = ("auto", "nccl", "mpi", "local", "ipc")


class _NonMember:
    """What new_group returns on ranks outside the group (PyTorch's GroupMember.NON_GROUP_MEMBER)."""

    def __repr__(self):
        return "NON_GROUP_MEMBER"

    def __getattr__(self, name):
        raise CollectiveError(f"this rank is not a member of the group; it cannot call {name} on it")


NON_GROUP_MEMBER = _NonMember()

_state_lock = threading.Lock()
_world: ProcessGroup | None = None
_groups: list = []
_info = None
_new_group_count = 0


def is_initialized() -> bool:
    return _world is not None


def _require(group=None) -> ProcessGroup:
    if group is NON_GROUP_MEMBER:
        raise CollectiveError("this rank is not a member of the group passed (new_group returned "
                              "NON_GROUP_MEMBER here); only members may call collectives on it")
    if group is not None:
        if not isinstance(group, ProcessGroup):
            raise TypeError(f"group must be a ProcessGroup from new_group(), got {type(group).__name__}")
        return group
    if _world is None:
        raise CollectiveError("the default process group is not initialised: call "
                              "vt.collectives.init_process_group(backend=...) first")
    return _world


def default_group() -> ProcessGroup:
    return _require()


def _timeout_seconds(timeout):
    if timeout is None:
        return None
    t = timeout.total_seconds() if hasattr(timeout, "total_seconds") else float(timeout)
    if t <= 0:
        raise ValueError(f"init_process_group: timeout must be positive seconds, got {timeout!r}")
    return t


def _resolve():
    try:
        from ..rank_env import resolve  # noqa: PLC0415 - the one resolver shared with vt-launch
    except ImportError:
        return None
    return resolve()


def _mpi_world(timeout):
    from .transport.mpi import mpi
    MPI = mpi()
    if MPI.Query_thread() < MPI.THREAD_MULTIPLE:
        observe.counter_add("collectives.mpi.not_thread_multiple", 1)
    return MPI.COMM_WORLD


def _idup(comm, deadline, what):
    """Duplicate a communicator without a blocking call that could hang."""
    req = comm.Ibarrier()
    if not poll(req.Test, deadline):
        raise CollectiveTimeout(f"{what}: not every rank reached it within the timeout; every rank must call it",
                                op=what)
    return comm.Dup()


def init_process_group(backend="auto", timeout=None, rank=None, world_size=None, devices=None,
                       init_method=None, store=None, device_id=None):
    """Create the default (world) group. ``rank``/``world_size`` are checked against the environment
    (vt-launch, mpiexec, SLURM variables; ``vibetensor.rank_env``) and MPI; ``devices`` lists the
    local devices for ``local`` (default: every virtual CPU device, or every CUDA device) or this
    rank's device for the others (default: cuda:local_rank when CUDA is used)."""
    global _world, _info
    if init_method not in (None, "env://") or store is not None:
        raise NotImplementedError("init_method/store rendezvous: vibetensor bootstraps through MPI "
                                  "(vt-launch / mpiexec / srun) or the local backend")
    b = str(backend).lower()
    if ":" in b or "," in b:
        raise ValueError(f"init_process_group: backend {backend!r}: per-device backend strings are not supported; "
                         f"use one of {', '.join(BACKENDS)} (nccl already sends CPU tensors over MPI)")
    if b not in BACKENDS:
        raise ValueError(f"init_process_group: unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    with _state_lock:
        if _world is not None:
            raise CollectiveError(f"init_process_group: already initialised (backend {_world.backend!r}, "
                                  f"world size {_world.size()}); call destroy_process_group() first")
        tmo = _timeout_seconds(timeout)
        info = _resolve()
        env_world = info.world_size if info is not None else 1
        if devices is not None:
            devices = [_as_device(d) for d in (devices if isinstance(devices, (list, tuple)) else [devices])]
        if device_id is not None and devices is None:
            devices = [_as_device(device_id)]
        if b == "auto":
            b = _auto_backend(env_world, world_size, devices)
        if b == "local" or (b == "nccl" and env_world == 1 and devices is not None and len(devices) > 1):
            _world = _init_local(devices, rank, world_size, tmo, nccl=(b == "nccl"))
        else:
            _world = _init_mpi(b, info, rank, world_size, devices, tmo)
        _info = info
        _groups.append(_world)
        observe.set_rank(_world.rank()) if _world._side is not None else None
        return _world


def _auto_backend(env_world, world_size, devices):
    if (world_size or env_world) > 1:
        from ..core import backend as _be
        if _be.cuda_available() and (devices is None or devices[0].type == "cuda"):
            info = _resolve()
            lws = info.local_world_size if info is not None else 1
            return "ipc" if lws > _be.cuda_device_count() else "nccl"
        return "mpi"
    if devices is not None and len(devices) > 1:
        return "local"
    import sys
    return "mpi" if "mpi4py.MPI" in sys.modules else "local"


def _init_local(devices, rank, world_size, tmo, nccl=False):
    if devices is None:
        from ..core import backend as _be
        devs = cpu_devices()
        if len(devs) == 1 and _be.cuda_available() and _be.cuda_device_count() > 1:
            devs = [Device("cuda", i) for i in range(_be.cuda_device_count())]
    else:
        devs = devices
    if rank not in (None, 0):
        raise ValueError(f"init_process_group(backend='local'): one process holds every rank; rank must be 0 or "
                         f"None, got {rank}")
    if world_size is not None and world_size != len(devs):
        raise ValueError(f"init_process_group(backend='local'): world_size={world_size} but {len(devs)} devices "
                         f"({', '.join(map(str, devs))}); set VT_CPU_DEVICES or pass devices=")
    from .transport.local import LocalTransport
    factory = None
    if nccl:  # one process driving several GPUs through NCCL (ncclCommInitAll + group calls)
        from .transport.nccl import make_nccl
        factory = make_nccl
    return ProcessGroup("world", "nccl" if nccl else "local", LocalTransport(devs), timeout=tmo,
                        device_transport_factory=factory)


def _device_for(b, info, devices):
    if devices is not None:
        if len(devices) != 1:
            raise ValueError(f"init_process_group(backend={b!r}): one device per process, got {devices}; "
                             f"use backend='local' to drive several devices from one process")
        return devices[0]
    if b in ("nccl", "ipc"):
        from ..core import backend as _be
        n = _be.cuda_device_count()
        if n == 0:
            from ..errors import DeviceUnavailableError
            raise DeviceUnavailableError(f"init_process_group(backend={b!r}) needs a CUDA device; none is visible "
                                         f"(use backend='mpi' for CPU tensors)")
        lr = info.local_rank if info is not None else 0
        return Device("cuda", lr % n)
    return None


def _init_mpi(b, info, rank, world_size, devices, tmo):
    try:
        comm = _mpi_world(tmo)
    except ImportError as e:
        raise CollectiveError(f"init_process_group(backend={b!r}) needs mpi4py ({e}); "
                              f"pip install 'vibetensor[mpi]', or use backend='local'") from None
    n, r = comm.Get_size(), comm.Get_rank()
    if world_size is not None and world_size != n:
        raise ValueError(f"init_process_group: world_size={world_size} but MPI has {n} ranks; launch with "
                         f"mpiexec -n {world_size} (or vt-launch -n {world_size})")
    if rank is not None and rank != r:
        raise ValueError(f"init_process_group: rank={rank} but this process is MPI rank {r}")
    if info is not None and info.world_size not in (1, n):
        raise CollectiveError(f"init_process_group: the environment says world size {info.world_size} "
                              f"({info.source}) but MPI COMM_WORLD has {n} ranks; launch every rank through one "
                              f"mpiexec / vt-launch")
    dev = _device_for(b, info, devices)
    return _make_mpi_group("world", b, comm, list(range(n)), tmo, dev)


def _make_mpi_group(name, b, parent, world_ranks, tmo, dev):
    from .side import SideChannel
    from .transport.mpi import MPITransport
    from ..core import backend as _be
    from .. import _env
    deadline = time.monotonic() + (tmo or _env.flags().collective_timeout)
    data = _idup(parent, deadline, f"creating group {name!r}")
    side = SideChannel(data.Dup())
    p2p = data.Dup()
    factory = None
    if b == "nccl":
        from .transport.nccl import make_nccl
        factory = make_nccl
    elif b == "ipc":
        from .transport.ipc import make_ipc
        factory = make_ipc
    if dev is not None and dev.type == "cuda":
        _be.xp_for(dev)  # a clear error when the device does not exist
    from .transport.shm import intra_node_comm
    g = ProcessGroup(name, b, MPITransport(data), side=side, p2p_comm=p2p, timeout=tmo,
                     world_ranks=world_ranks, device=dev, device_transport_factory=factory)
    g._shm_comm = intra_node_comm(p2p, deadline)
    return g


def new_group(ranks=None, timeout=None, backend=None):
    """A group of a subset of ranks. Every rank of the default group must call it (in the same order);
    ranks outside ``ranks`` get NON_GROUP_MEMBER."""
    global _new_group_count
    world = _require()
    b = world.backend if backend is None else str(backend).lower()
    if b not in (world.backend, "auto"):
        if world._side is None or b not in ("mpi", "nccl", "ipc"):
            raise NotImplementedError(f"new_group(backend={backend!r}) over a {world.backend!r} default group: only "
                                      f"mpi, nccl and ipc groups can be made from an MPI world")
    elif b == "auto":
        b = world.backend
    n = world.size()
    ranks = list(range(n)) if ranks is None else sorted(int(r) for r in ranks)
    if not ranks or len(set(ranks)) != len(ranks) or ranks[0] < 0 or ranks[-1] >= n:
        raise ValueError(f"new_group: ranks must be distinct ints in 0..{n - 1}, got {ranks}")
    tmo = _timeout_seconds(timeout) if timeout is not None else world._timeout
    with _state_lock:
        _new_group_count += 1
        name = f"group{_new_group_count}"
    if world._side is None:  # local: a subset of this process's devices
        from .transport.local import LocalTransport
        devs = world._host.devices()
        g = ProcessGroup(name, world.backend, LocalTransport([devs[r] for r in ranks]), timeout=tmo,
                         device_transport_factory=world._dev_factory)
        _groups.append(g)
        return g
    from .. import _env
    comm = world._host.comm
    deadline = time.monotonic() + (tmo or _env.flags().collective_timeout)
    req = world._side.comm.Ibarrier()  # everyone is here, so the blocking Create_group cannot hang
    if not poll(req.Test, deadline):
        raise CollectiveTimeout(f"new_group({ranks}): not every rank of the default group called new_group within "
                                f"the timeout; every rank must call it, members or not", op="new_group")
    admin = world._p2p_comm  # never used for collectives elsewhere, so no cross-thread ordering issue
    sub = admin.Create_group(admin.Get_group().Incl(ranks))
    if comm.Get_rank() not in ranks:
        return NON_GROUP_MEMBER
    dev = world._device
    if dev is None and b in ("nccl", "ipc"):
        dev = _device_for(b, _info, None)
    g = _make_mpi_group(name, b, sub, ranks, tmo, dev)
    _groups.append(g)
    return g


def destroy_process_group(group=None):
    """Destroy ``group``, or every group and the default one (then init_process_group may run again)."""
    global _world, _new_group_count
    with _state_lock:
        if group is None:
            if _world is None:
                raise CollectiveError("destroy_process_group: not initialised")
            for g in list(_groups):
                g.destroy()
            _groups.clear()
            _world = None
            _new_group_count = 0
            return
        g = _require(group)
        g.destroy()
        if g in _groups:
            _groups.remove(g)
        if g is _world:
            _world = None


def get_rank(group=None) -> int:
    """This process's rank in ``group`` (-1 outside it). A ``local`` group's process holds every rank: 0."""
    if group is NON_GROUP_MEMBER:
        return -1
    return _require(group).rank()


def get_world_size(group=None) -> int:
    if group is NON_GROUP_MEMBER:
        return -1
    return _require(group).size()


def get_backend(group=None) -> str:
    return _require(group).backend


def get_global_rank(group, group_rank: int) -> int:
    return _require(group).world_ranks[group_rank]


def get_group_rank(group, global_rank: int) -> int:
    return _require(group).group_rank(global_rank)
