"""``vt.fabric``: which devices exist and how they connect, device meshes, placements, sharded tensors.

    topo = vt.fabric.topology()                  # frozen snapshot (NVML / VT_TOPOLOGY_FILE / VT_CPU_DEVICES)
    mesh = vt.fabric.init_device_mesh("cpu", (2, 2), mesh_dim_names=("dp", "tp"))
    w = vt.fabric.distribute_tensor(w, mesh, [Replicate(), Shard(0)])
    y = vt.nn.functional.linear(x, w)            # runs shard by shard (the Sharded dispatch key)

Importing this package installs the Sharded dispatch handler.
"""
from .topo import (  # noqa: F401
    TopologySnapshot, DeviceInfo, LinkKind, TopologyError, topology, parse_link, fixture_path, load_file,
)
from .placement import ring_order, arrange  # noqa: F401
from .spec import Shard, Replicate, Partial, Placement, ReduceOp  # noqa: F401
from .mesh import DeviceMesh, init_device_mesh  # noqa: F401
from .dtensor import DTensor, distribute_tensor, from_local  # noqa: F401
from . import handler as _handler  # noqa: F401  (installs the Sharded key)
from . import rules_pointwise, rules_reduce, rules_shape, rules_linalg, rules_loss, rules_conv  # noqa: F401
from .handler import rule as register_sharding_rule, Plan, Decline  # noqa: F401
from .compat import (  # noqa: F401
    enable, disable, is_enabled, stats, reset_stats, events, set_events_mode, wait_for_event_seq, add, mul,
    FabricStats,
)
from .bandwidth import measure_bandwidth, BandwidthReport  # noqa: F401


def inspect_topology() -> dict:
    """The topology snapshot as plain data (JSON-serialisable)."""
    return topology().to_dict()


def cliques() -> list:
    """Groups of mutually peer-accessible devices (device indices)."""
    return [list(c) for c in topology().cliques]


def enable_peer_access() -> int:
    """Enable CUDA peer access inside every clique (done once; Fabric calls it before peer copies)."""
    from .nvml import enable_peer_access as _e
    return _e(topology())
