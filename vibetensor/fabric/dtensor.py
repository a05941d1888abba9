"""DTensor: a tensor laid out over a DeviceMesh (one local shard per mesh device in this process; on a
multi-process mesh -- one position per rank of the initialised process group -- only this rank's shard,
the others' data moving through ``vibetensor.collectives``, see ``mp``).

Autograd treats a DTensor as its global value: ops record once on the DTensor, the Sharded key runs
them shard by shard (``handler``), and backward formulas -- vt ops too -- come back through the same
handler, so gradients are DTensors. ``shape``/``dtype``/``numel`` are global; ``device`` is the mesh's
device type ("cpu") or, on CUDA, the mesh's first device.
"""
from __future__ import annotations

import math

from ..core.device import Device
from ..core.dispatcher import defop
from ..core.grad_mode import no_grad, is_grad_enabled
from ..core.tensor import Tensor, _VersionCounter, _INPLACE, _index_arg
from ..errors import DeviceMismatchError
from . import layout
from .mesh import DeviceMesh
from .spec import Partial, Replicate, normalize


class _GlobalMeta:
    """Stands in for ``Tensor._data`` on a DTensor: global shape and dtype, no storage."""

    __slots__ = ("shape", "dtype", "itemsize")

    class flags:  # noqa: N801 - mirrors ndarray.flags
        c_contiguous = True
        writeable = True

    def __init__(self, shape, dtype):
        self.shape = tuple(shape)
        self.dtype = dtype.np
        self.itemsize = dtype.itemsize

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        return math.prod(self.shape)

    @property
    def nbytes(self):
        return self.size * self.itemsize

    @property
    def strides(self):
        out, acc = [], self.itemsize
        for s in reversed(self.shape):
            out.append(acc)
            acc *= max(s, 1)
        return tuple(reversed(out))


def _grad_placements(placements):
    """Placements for the gradient of a tensor laid out as ``placements`` (Partial -> Replicate)."""
    return tuple(Replicate() if isinstance(p, Partial) else p for p in placements)


class DTensor(Tensor):
    _is_sharded = True

    @classmethod
    def _new(cls, locals_, mesh: DeviceMesh, placements, gshape, dtype, requires_grad=False):
        t = object.__new__(cls)
        t._local = list(locals_)
        t._mesh = mesh
        t._placements = tuple(placements)
        t._meta = _GlobalMeta(gshape, dtype)
        t._dtype = dtype
        t._device = Device("cpu") if mesh.device_type == "cpu" else mesh.devices[0]
        t.requires_grad = requires_grad
        t.grad = None
        t.grad_fn = None
        t._output_nr = 0
        t._vc = _VersionCounter()
        t._base = None
        t._accum = None
        t._post_hooks = None
        t._retains_grad = False
        return t

    @classmethod
    def _from_locals(cls, locals_, mesh, placements):
        gshape = layout.global_shape([tuple(x.shape) for x in locals_], mesh, placements)
        return cls._new(locals_, mesh, placements, gshape, locals_[0]._dtype)

    # ---- storage stand-in (the slot is shadowed: DTensors keep shards, not one array)
    @property
    def _data(self):
        return self._meta

    @property
    def data(self):
        return self.detach()

    @data.setter
    def data(self, other):
        if not isinstance(other, DTensor) or other._mesh != self._mesh:
            raise TypeError("dtensor.data = x expects a DTensor on the same mesh")
        self._local, self._placements, self._meta, self._dtype = (list(other._local), other._placements,
                                                                  other._meta, other._dtype)

    # ---- DTensor API
    @property
    def device_mesh(self) -> DeviceMesh:
        return self._mesh

    @property
    def placements(self) -> tuple:
        return self._placements

    def local_shards(self) -> list:
        """The shards in mesh order (row-major), one per addressable mesh device."""
        return list(self._local)

    def to_local(self, device=None):
        """The local shard: of ``device``, or of the only device of a 1-device mesh; with several
        devices and no ``device``, the list of shards in mesh order (one process drives them all). On a
        multi-process mesh: this process's shard."""
        if self._mesh.is_multi_process:  # (``device`` can only name this process's device)
            return to_local_op(self, self._mesh.local_indices()[0], self._placements, self._mesh, self._shapes())
        if device is not None and not self._mesh.is_multi_process:
            from ..core.device import device as _as_device
            dev = _as_device(device)
            if dev not in self._mesh.devices:
                raise ValueError(f"to_local: {dev} is not in {self._mesh}")
            return to_local_op(self, self._mesh.devices.index(dev), self._placements, self._mesh, self._shapes())
        if self._mesh.size() == 1:
            return to_local_op(self, 0, self._placements, self._mesh, self._shapes())
        return [to_local_op(self, k, self._placements, self._mesh, self._shapes()) for k in range(self._mesh.size())]

    def _shapes(self):
        return tuple(tuple(x.shape) for x in self._local)

    def full_tensor(self) -> Tensor:
        """The global value as a plain tensor on the mesh's first device (differentiable)."""
        return full_tensor_op(self, self._placements, self._mesh)

    def redistribute(self, device_mesh=None, placements=None) -> "DTensor":
        mesh = self._mesh if device_mesh is None else device_mesh
        if mesh != self._mesh:
            raise NotImplementedError(f"redistribute onto another mesh ({mesh} from {self._mesh}) is not "
                                      f"supported; full_tensor() then distribute_tensor() instead")
        dst = normalize(self._placements if placements is None else placements, mesh.ndim, self.ndim,
                        "redistribute")
        if dst == self._placements:
            return self
        return redistribute_op(self, mesh, dst, self._placements)

    def _like(self, kind, *args, dtype=None, requires_grad=False, **kw):
        """``zeros_like``/``ones_like``/... of a DTensor: a DTensor of the same mesh and layout (Partial
        becomes Replicate, so ``ones_like`` means ones). Random ones draw the whole tensor once."""
        from ..core import factories as F
        dt = dtype or self._dtype
        pl = _grad_placements(self._placements)
        with no_grad():
            if kind in ("zeros", "ones", "empty", "full"):
                locs = [getattr(F, kind)(layout.local_shape(self._meta.shape, self._mesh, pl, self._mesh.coords(k)),
                                         *args, dtype=dt, device=self._mesh.devices[k])
                        for k in self._mesh.local_indices()]
            else:
                full = getattr(F, kind)(self._meta.shape, dtype=dt, device=self._mesh.devices[0], **kw)
                if self._mesh.is_multi_process:
                    from . import mp
                    full = mp.broadcast(full, self._mesh)
                locs = layout.split(full, self._mesh, pl, why=f"{kind}_like")
        out = DTensor._new(locs, self._mesh, pl, self._meta.shape, dt)
        if requires_grad:
            out.requires_grad_(True)
        return out

    def requires_grad_(self, requires_grad=True):
        super().requires_grad_(requires_grad)
        if requires_grad and self.is_leaf and not getattr(self, "_layout_hook", False):
            self._layout_hook = True
            self.register_hook(_grad_layout_hook(self._mesh, _grad_placements(self._placements)))
        return self

    # ---- Tensor overrides that touch storage
    def detach(self):
        t = DTensor._new([x.detach() for x in self._local], self._mesh, self._placements, self._meta.shape,
                         self._dtype)
        t._vc = self._vc
        t._base = self if self._base is None else self._base
        return t

    def _full_nograd(self):
        with no_grad():
            return self.full_tensor()

    def item(self):
        return self._full_nograd().item()

    def tolist(self):
        return self._full_nograd().tolist()

    def __array__(self, dtype=None, copy=None):
        return self._full_nograd().__array__(dtype)

    def numpy(self, *, force=False):
        if self.requires_grad and not force:
            raise RuntimeError("can't call numpy() on a tensor that requires grad; use t.detach().numpy()")
        return self._full_nograd().numpy()

    def data_ptr(self):
        raise RuntimeError("a DTensor has one buffer per device; use t.to_local() and data_ptr() of a shard")

    def storage_offset(self):
        return 0

    def is_contiguous(self):
        return True

    def contiguous(self, memory_format=None):
        return self

    def to(self, *args, **kwargs):
        for a in list(args) + list(kwargs.values()):
            if isinstance(a, (str, Device)) or (isinstance(a, int) and not isinstance(a, bool)):
                raise NotImplementedError(
                    f"DTensor.to({a!r}): moving a sharded tensor to another device is not supported; use "
                    f"full_tensor().to(device), or redistribute on a mesh of those devices")
        return super().to(*args, **kwargs)

    def cpu(self):
        raise NotImplementedError("DTensor.cpu(): use full_tensor().cpu()")

    def cuda(self, device=None):
        raise NotImplementedError("DTensor.cuda(): use distribute_tensor on a CUDA mesh")

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        if gradient is None and self.numel() == 1:
            from ..core import factories
            one = factories.ones(self.shape, dtype=self._dtype, device=self._mesh.devices[0])
            gradient = distribute_tensor(one, self._mesh, _grad_placements(self._placements))
        super().backward(gradient, retain_graph=retain_graph, create_graph=create_graph, inputs=inputs)

    def __setitem__(self, index, value):
        raise NotImplementedError("item assignment on a DTensor is not supported; build the value with ops "
                                  "(e.g. vt.where / masked_fill) or use full_tensor()")

    def __getitem__(self, index):
        from ..core.tensor import V
        return V.getitem(self, _index_arg(index))

    def __reduce__(self):
        raise NotImplementedError("pickling a DTensor is not supported; save full_tensor() or each shard")

    def __repr__(self):
        rg = ", requires_grad=True" if self.requires_grad and self.grad_fn is None else ""
        gf = f", grad_fn=<{self.grad_fn.name()}>" if self.grad_fn is not None else ""
        return (f"DTensor(shape={tuple(self.shape)}, dtype={self._dtype.name}, mesh={self._mesh}, "
                f"placements={list(self._placements)}{gf}{rg})")

    __str__ = __repr__

    # ---- in place: compute out of place, lay the result out as this tensor, write each shard
    def _inplace(self, name, args, kwargs):
        from . import handler
        return handler.inplace(self, name, args, kwargs)


def _make_inplace(name):
    def method(self, *args, **kwargs):
        return self._inplace(name, args, kwargs)
    method.__name__ = name + "_"
    return method


for _n in _INPLACE:
    setattr(DTensor, _n + "_", _make_inplace(_n))


# ---------------------------------------------------------------------------------------------
# differentiable conversions (raw ops with a Sharded kernel; the plain kernels refuse)

def _on_sharded(op):
    def deco(fn):
        op.register("sharded", fn)
        return fn
    return deco


def _need_dtensor(name):
    def k(*a, **kw):
        raise TypeError(f"fabric::{name} expects a DTensor")
    return k


def _grad_layout_hook(mesh, placements):
    """A leaf's gradient takes the leaf's layout (a Partial sum is reduced, a replicated gradient of a
    sharded parameter is sliced), so ``.grad`` is laid out like the parameter, whatever the ops did."""
    def hook(g):
        g = _plain_to_dtensor(g, mesh, placements)
        if g._placements != placements:
            with no_grad():
                g = DTensor._new(layout.redistribute_locals(g._local, g._meta.shape, mesh, g._placements, placements),
                                 mesh, placements, g._meta.shape, g._dtype)
        return g
    return hook


def _plain_to_dtensor(g, mesh, placements):
    if isinstance(g, DTensor):
        return g
    return _distribute(g, mesh, placements)


redistribute_op = defop("redistribute", namespace="fabric", raw=True)(_need_dtensor("redistribute"))


@_on_sharded(redistribute_op)
def _(x, mesh, dst, src):
    if x._mesh != mesh:
        raise ValueError(f"redistribute: the tensor lives on {x._mesh}, not {mesh}")
    locs = layout.redistribute_locals(x._local, x._meta.shape, mesh, x._placements, dst)
    return DTensor._new(locs, mesh, dst, x._meta.shape, x._dtype)


@redistribute_op.def_backward
def _(ctx, g):
    mesh, dst, src = ctx.args[1], ctx.args[2], ctx.args[3]
    g = _plain_to_dtensor(g, mesh, _grad_placements(dst))
    want = _grad_placements(src)
    return redistribute_op(g, mesh, want, g._placements) if g._placements != want else g


full_tensor_op = defop("full_tensor", namespace="fabric", raw=True)(_need_dtensor("full_tensor"))


@_on_sharded(full_tensor_op)
def _(x, placements, mesh):
    return layout.join(x._local, x._mesh, x._placements, root=x._mesh.devices[0], gshape=x._meta.shape)


@full_tensor_op.def_backward
def _(ctx, g):
    return _distribute(g, ctx.args[2], _grad_placements(ctx.args[1]))


to_local_op = defop("to_local", namespace="fabric", raw=True)(_need_dtensor("to_local"))


@_on_sharded(to_local_op)
def _(x, k, placements, mesh, shapes):
    return x._local[x._mesh.local_indices().index(k)].detach()


@to_local_op.def_backward
def _(ctx, g):
    k, placements, mesh, shapes = ctx.args[1:5]
    locs = []
    for i, j in enumerate(mesh.local_indices()):
        dev = mesh.devices[j]
        if j == k:
            locs.append(layout.move(g, dev, "to_local backward"))
        else:
            locs.append(layout._zeros_like_shape(g, shapes[i], dev))
    pl = tuple(Partial("sum") if isinstance(p, Replicate) else p for p in placements)
    return DTensor._new(locs, mesh, pl, ctx.args[0].shape, g._dtype)


def _distribute(t: Tensor, mesh, placements) -> DTensor:
    locs = layout.split(t, mesh, placements)
    return DTensor._new(locs, mesh, placements, tuple(t.shape), t._dtype)


distribute_op = defop("distribute", namespace="fabric", raw=True)(
    lambda t, mesh, placements: _distribute(t, mesh, placements))


@distribute_op.def_backward
def _(ctx, g):
    mesh, pl = ctx.args[1], _grad_placements(ctx.args[2])
    g = _plain_to_dtensor(g, mesh, pl)
    return full_tensor_op(g, g._placements, mesh).to(ctx.args[0].device)


from_local_op = defop("from_local", namespace="fabric", raw=True)(_need_dtensor("from_local"))


def _from_local_kernel(locs, mesh, placements):
    return DTensor._from_locals([x.detach() for x in locs], mesh, placements)


from_local_op.register("cpu", _from_local_kernel)
from_local_op.register("cuda", _from_local_kernel)


@from_local_op.def_backward
def _(ctx, g):
    mesh, placements = ctx.args[1], ctx.args[2]
    g = _plain_to_dtensor(g, mesh, _grad_placements(placements))
    g = g.redistribute(mesh, _grad_placements(placements)) if g._placements != _grad_placements(placements) else g
    return tuple(g._local)


def _check_mesh_addressable(mesh):
    if mesh.is_multi_process:
        from .mesh import _mp_world
        if _mp_world() == len(mesh.devices):
            return  # one position per process of the initialised group (checked when the mesh was made)
        try:
            from .. import collectives
            ok = collectives.is_initialized()
        except Exception:  # noqa: BLE001
            ok = False
        if not ok:
            raise NotImplementedError(
                f"{mesh} spans several processes: multi-process meshes need vibetensor.collectives "
                f"(call vt.distributed.init_process_group first)")
        raise NotImplementedError(f"{mesh} was made for another process group (world size now {_mp_world()}); "
                                  f"build the mesh again after init_process_group")


def distribute_tensor(tensor: Tensor, device_mesh: DeviceMesh, placements=None) -> DTensor:
    """Lay ``tensor`` out over ``device_mesh`` (one shard copied onto each mesh device).

    A leaf keeps being a leaf (``requires_grad`` carries over: a sharded parameter); a non-leaf stays
    connected to its graph."""
    if isinstance(tensor, DTensor):
        raise TypeError("distribute_tensor: the tensor is already a DTensor; use .redistribute(mesh, placements)")
    if not isinstance(tensor, Tensor):
        raise TypeError(f"distribute_tensor: expected a Tensor, got {type(tensor).__name__}")
    if not isinstance(device_mesh, DeviceMesh):
        raise TypeError(f"distribute_tensor: expected a DeviceMesh, got {type(device_mesh).__name__}")
    _check_mesh_addressable(device_mesh)
    if tensor._device.type != device_mesh.device_type:
        raise DeviceMismatchError(f"distribute_tensor: the tensor is on {tensor._device} but the mesh holds "
                                  f"{device_mesh.device_type} devices; move it with .to() first")
    pl = normalize((Replicate(),) * device_mesh.ndim if placements is None else placements, device_mesh.ndim,
                   tensor.ndim, "distribute_tensor")
    if tensor.requires_grad and tensor.grad_fn is not None and is_grad_enabled():
        return distribute_op(tensor, device_mesh, pl)
    with no_grad():
        out = _distribute(tensor, device_mesh, pl)
    if tensor.requires_grad:
        out.requires_grad_(True)
    return out


def from_local(local_tensors, device_mesh: DeviceMesh, placements) -> DTensor:
    """A DTensor from one shard per mesh device (mesh order); differentiable."""
    if isinstance(local_tensors, Tensor):
        local_tensors = [local_tensors]
    local_tensors = list(local_tensors)
    _check_mesh_addressable(device_mesh)
    ks = device_mesh.local_indices()
    if len(local_tensors) != len(ks):
        raise ValueError(f"from_local: {len(local_tensors)} shards for a mesh of {device_mesh.size()} devices "
                         f"({len(ks)} of them in this process)")
    ndim = local_tensors[0].ndim
    pl = normalize(placements, device_mesh.ndim, ndim, "from_local")
    for k, t in zip(ks, local_tensors):
        dev = device_mesh.devices[k]
        if t._device != dev:
            raise DeviceMismatchError(f"from_local: shard {k} is on {t._device}, its mesh device is {dev}")
    out = from_local_op(local_tensors, device_mesh, pl)
    exp = [layout.local_shape(out.shape, device_mesh, pl, device_mesh.coords(k)) for k in ks]
    got = [tuple(t.shape) for t in local_tensors]
    if exp != got:
        raise ValueError(f"from_local: shard shapes {got} do not match a torch.chunk layout of global shape "
                         f"{tuple(out.shape)} for {list(pl)} (expected {exp})")
    return out


DTensor.from_local = staticmethod(from_local)
