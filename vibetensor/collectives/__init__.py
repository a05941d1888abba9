"""``vt.collectives`` (also ``vt.distributed``): process groups and collectives on vt tensors.

    import vibetensor as vt
    dist = vt.collectives
    dist.init_process_group("mpi")            # under mpiexec / vt-launch; "local" for devices in one process
    dist.all_reduce(t, op=dist.ReduceOp.SUM)  # in place, like torch.distributed
    w = dist.all_reduce(t, async_op=True); w.wait(timeout=30)

Backends: ``mpi`` (CPU tensors; CUDA tensors staged through pinned memory unless MPI is CUDA-aware;
on one host our ring uses a shared-memory window), ``nccl`` (CUDA via NCCL, CPU via MPI), ``ipc`` (CUDA
IPC between processes of one host, several may share a GPU), ``local`` (one process, one rank per
device: collectives then take a list with one tensor per device, as the old ``*_multigpu`` calls did).
``all_reduce(..., algorithm="ring"|"native"|"auto")`` picks our ring or the library collective
(auto: measured crossovers in tuning.py). Ranks in ``src``/``dst`` are global ranks, as in PyTorch.

Every collective has a timeout (``timeout=`` per call, else the group's, else VT_COLLECTIVE_TIMEOUT) and
raises CollectiveTimeout naming the ranks that never joined. VT_DEBUG_COLLECTIVES=1 compares a
fingerprint of every collective across ranks first.
"""
from __future__ import annotations

from .api import (  # noqa: F401
    BACKENDS, NON_GROUP_MEMBER, default_group, destroy_process_group, get_backend, get_global_rank,
    get_group_rank, get_rank, get_world_size, init_process_group, is_initialized, new_group,
)
from .objects import all_gather_object, broadcast_object_list  # noqa: F401
from .errors import CollectiveError, CollectiveMismatchError, CollectiveTimeout, GroupBrokenError  # noqa: F401
from .group import ProcessGroup  # noqa: F401
from .types import P2POp, ReduceOp  # noqa: F401
from .work import Work  # noqa: F401
from .api import _require


class GroupMember:
    WORLD = None
    NON_GROUP_MEMBER = NON_GROUP_MEMBER


def is_available() -> bool:
    return True


def is_mpi_available() -> bool:
    import importlib.util
    return importlib.util.find_spec("mpi4py") is not None


def is_nccl_available() -> bool:
    from ..core import backend as _be
    if not _be.cuda_available():
        return False
    try:
        from cupy.cuda import nccl  # noqa: F401,PLC0415
        return nccl.available if hasattr(nccl, "available") else True
    except Exception:
        return False


def all_reduce(tensor, op=ReduceOp.SUM, group=None, async_op=False, timeout=None, algorithm="auto"):
    return _require(group).all_reduce(tensor, op, async_op=async_op, timeout=timeout, algorithm=algorithm)


def broadcast(tensor, src=0, group=None, async_op=False, timeout=None):
    return _require(group).broadcast(tensor, src, async_op=async_op, timeout=timeout)


def all_gather(tensor_list, tensor, group=None, async_op=False, timeout=None):
    return _require(group).all_gather(tensor_list, tensor, async_op=async_op, timeout=timeout)


def all_gather_into_tensor(output_tensor, input_tensor, group=None, async_op=False, timeout=None):
    return _require(group).all_gather_into_tensor(output_tensor, input_tensor, async_op=async_op, timeout=timeout)


def reduce_scatter(output, input_list, op=ReduceOp.SUM, group=None, async_op=False, timeout=None):
    return _require(group).reduce_scatter(output, input_list, op, async_op=async_op, timeout=timeout)


def reduce_scatter_tensor(output, input, op=ReduceOp.SUM, group=None, async_op=False, timeout=None):
    return _require(group).reduce_scatter_tensor(output, input, op, async_op=async_op, timeout=timeout)


def reduce(tensor, dst=0, op=ReduceOp.SUM, group=None, async_op=False, timeout=None):
    return _require(group).reduce(tensor, dst, op, async_op=async_op, timeout=timeout)


def barrier(group=None, async_op=False, timeout=None, device_ids=None):
    return _require(group).barrier(async_op=async_op, timeout=timeout)


def send(tensor, dst, group=None, tag=0, timeout=None):
    return _require(group).send(tensor, dst, tag=tag, timeout=timeout)


def recv(tensor, src=None, group=None, tag=0, timeout=None):
    return _require(group).recv(tensor, src, tag=tag, timeout=timeout)


def isend(tensor, dst, group=None, tag=0, timeout=None):
    return _require(group).isend(tensor, dst, tag=tag, timeout=timeout)


def irecv(tensor, src=None, group=None, tag=0, timeout=None):
    return _require(group).irecv(tensor, src, tag=tag, timeout=timeout)


def batch_isend_irecv(p2p_op_list):
    """Post every P2POp (receives first, so two ranks exchanging cannot deadlock); one Work per op."""
    if not p2p_op_list:
        raise ValueError("batch_isend_irecv: the list of P2POp is empty")
    for p in p2p_op_list:
        if not isinstance(p, P2POp):
            raise TypeError(f"batch_isend_irecv: expected P2POp entries, got {type(p).__name__}")
    works = [None] * len(p2p_op_list)
    for i, p in sorted(enumerate(p2p_op_list), key=lambda ip: ip[1].kind != "recv"):
        g = _require(p.group)
        works[i] = g.irecv(p.tensor, p.peer, tag=p.tag) if p.kind == "recv" else g.isend(p.tensor, p.peer, tag=p.tag)
    return works
