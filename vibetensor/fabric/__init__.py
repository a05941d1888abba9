"""``vt.fabric``: topology discovery, device meshes, placements and sharded tensors (work in progress)."""
from .topology import (  # noqa: F401
    TopologySnapshot, DeviceInfo, LinkKind, TopologyError, topology, parse_link,
)
from .placement import ring_order, arrange  # noqa: F401
