"""Topology snapshots: which devices exist and how they connect.

``topology()`` returns a frozen, JSON-serialisable :class:`TopologySnapshot` from the first source
that applies: ``VT_TOPOLOGY_FILE`` (a JSON file, e.g. one of the shipped fixtures), the real GPUs
(NVML + the CUDA runtime through CuPy), or the virtual CPU devices (``VT_CPU_DEVICES``). Link codes
follow ``nvidia-smi topo -m``: X (self), NV# (# NVLinks), PIX, PXB, PHB, NODE, SYS; virtual CPU
devices share host memory and are linked by HOST.
"""
from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, asdict, field
from enum import Enum

from .. import _env


class TopologyError(RuntimeError):
    """A topology source failed: a malformed file, or NVML / the driver reported an error."""


class LinkKind(str, Enum):
    SELF = "X"
    NVLINK = "NV"      # NV<count>
    PIX = "PIX"        # at most one PCIe bridge
    PXB = "PXB"        # several PCIe bridges, no host bridge
    PHB = "PHB"        # through a PCIe host bridge (CPU)
    NODE = "NODE"      # between host bridges inside one NUMA node
    SYS = "SYS"        # across NUMA nodes (QPI/UPI/Infinity Fabric)
    HOST = "HOST"      # virtual CPU devices: the same host memory


_LINK_RE = re.compile(r"^(X|NV(\d+)|PIX|PXB|PHB|NODE|SYS|HOST)$")

# Relative link quality used to rank placements and rings (higher is better). NVLink scales by
# link count; PCIe paths rank by how far the traffic travels. Nominal GB/s per direction are
# used for bandwidth warnings only.
_PCIE_SCORE = {"PIX": 4.0, "PXB": 3.0, "PHB": 2.0, "NODE": 1.5, "SYS": 1.0, "HOST": 4.0, "X": 0.0}
NVLINK_GBPS_PER_LINK = 25.0   # NVLink 3/4 per direction per link
PCIE_GBPS = 25.0              # PCIe 4.0 x16 per direction (order of magnitude)


def parse_link(code: str) -> tuple[LinkKind, int]:
    """``"NV18"`` -> (LinkKind.NVLINK, 18); ``"PIX"`` -> (LinkKind.PIX, 0)."""
    m = _LINK_RE.match(str(code).strip().upper())
    if not m:
        raise ValueError(f"unknown link code {code!r}: expected X, NV<n>, PIX, PXB, PHB, NODE, SYS or HOST")
    if m.group(2) is not None:
        return LinkKind.NVLINK, int(m.group(2))
    return LinkKind(m.group(1)), 0


def link_score(code: str) -> float:
    kind, n = parse_link(code)
    if kind is LinkKind.NVLINK:
        return 10.0 + n
    return _PCIE_SCORE[kind.value]


def nominal_gbps(code: str) -> float | None:
    kind, n = parse_link(code)
    if kind is LinkKind.NVLINK:
        return n * NVLINK_GBPS_PER_LINK
    if kind in (LinkKind.PIX, LinkKind.PXB, LinkKind.PHB, LinkKind.NODE, LinkKind.SYS):
        return PCIE_GBPS
    return None


@dataclass(frozen=True)
class DeviceInfo:
    index: int
    name: str
    type: str = "cuda"                      # "cuda" | "cpu"
    memory_bytes: int | None = None
    compute_capability: str | None = None   # "9.0"
    pci_bus_id: str | None = None           # "00000000:18:00.0"
    numa_node: int | None = None
    cpu_affinity: str | None = None         # "0-31,64-95"
    uuid: str | None = None

    @property
    def label(self) -> str:
        return f"{self.type}:{self.index}"


@dataclass(frozen=True)
class TopologySnapshot:
    source: str                              # "nvml" | "file:<path>" | "virtual_cpu" | "none"
    devices: tuple[DeviceInfo, ...]
    links: tuple[tuple[str, ...], ...]       # nvidia-smi topo -m codes, links[i][j]
    nvlink_state: tuple[tuple[str, ...], ...]  # "up" | "down" | "-" per pair
    peer_access: tuple[tuple[bool, ...], ...]
    uva: bool
    cliques: tuple[tuple[int, ...], ...]     # mutually peer-accessible device indices
    driver_version: str | None = None
    cuda_version: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    # ---- queries
    @property
    def device_type(self) -> str | None:
        return self.devices[0].type if self.devices else None

    def __len__(self):
        return len(self.devices)

    def position(self, index: int) -> int:
        for p, d in enumerate(self.devices):
            if d.index == index:
                return p
        raise KeyError(index)

    def link(self, i: int, j: int) -> str:
        return self.links[self.position(i)][self.position(j)]

    def nvlinks(self, i: int, j: int) -> int:
        kind, n = parse_link(self.link(i, j))
        return n if kind is LinkKind.NVLINK else 0

    def can_access_peer(self, i: int, j: int) -> bool:
        return self.peer_access[self.position(i)][self.position(j)]

    def score(self, i: int, j: int) -> float:
        s = link_score(self.link(i, j))
        return s if self.can_access_peer(i, j) or i == j else s * 0.5

    def clique_of(self, i: int) -> tuple[int, ...]:
        for c in self.cliques:
            if i in c:
                return c
        return (i,)

    # ---- serialisation
    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("devices", "links", "nvlink_state", "peer_access", "cliques", "notes"):
            d[k] = [list(x) if isinstance(x, (tuple, list)) else x for x in d[k]]
        return d

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)


def compute_cliques(n: int, peer) -> tuple[tuple[int, ...], ...]:
    """Maximal groups of mutually peer-accessible positions (greedy, in index order; every device in one).

    ``peer[i][j]`` must hold both ways for i and j to share a clique."""
    left = list(range(n))
    out = []
    while left:
        seed = left.pop(0)
        group = [seed]
        for j in list(left):
            if all(peer[j][g] and peer[g][j] for g in group):
                group.append(j)
                left.remove(j)
        out.append(tuple(group))
    return tuple(out)


def _matrix(name, raw, n, path, conv):
    if not isinstance(raw, list) or len(raw) != n or any(not isinstance(r, list) or len(r) != n for r in raw):
        raise TopologyError(f"topology file {path}: '{name}' must be a {n}x{n} matrix (one row per device), "
                            f"got {_short(raw)}")
    try:
        return tuple(tuple(conv(v) for v in row) for row in raw)
    except (TypeError, ValueError) as e:
        raise TopologyError(f"topology file {path}: bad entry in '{name}': {e}") from None


def _short(x, n=80):
    s = repr(x)
    return s if len(s) <= n else s[:n] + "..."


def _default_peer(code: str) -> bool:
    kind, _ = parse_link(code)
    return kind in (LinkKind.SELF, LinkKind.NVLINK, LinkKind.PIX, LinkKind.PXB, LinkKind.HOST)


def from_dict(d: dict, path: str = "<dict>") -> TopologySnapshot:
    """Build a snapshot from a JSON object (the ``to_dict`` format); errors name ``path`` and the problem."""
    if not isinstance(d, dict):
        raise TopologyError(f"topology file {path}: expected a JSON object at the top level, got {type(d).__name__}")
    devs_raw = d.get("devices")
    if not isinstance(devs_raw, list) or not devs_raw:
        raise TopologyError(f"topology file {path}: 'devices' must be a non-empty list of device objects")
    devices = []
    known = set(DeviceInfo.__dataclass_fields__)
    for k, dv in enumerate(devs_raw):
        if not isinstance(dv, dict) or "name" not in dv:
            raise TopologyError(f"topology file {path}: device #{k} must be an object with at least 'name' "
                                f"(and 'index'), got {_short(dv)}")
        extra = set(dv) - known
        if extra:
            raise TopologyError(f"topology file {path}: device #{k} has unknown field(s) {sorted(extra)}; "
                                f"known: {sorted(known)}")
        dv = dict(dv)
        dv.setdefault("index", k)
        if not isinstance(dv["index"], int):
            raise TopologyError(f"topology file {path}: device #{k} 'index' must be an integer, got {dv['index']!r}")
        devices.append(DeviceInfo(**dv))
    idx = [x.index for x in devices]
    if len(set(idx)) != len(idx):
        raise TopologyError(f"topology file {path}: duplicate device indices {idx}")
    n = len(devices)
    if "links" not in d:
        raise TopologyError(f"topology file {path}: missing 'links' (a {n}x{n} matrix of nvidia-smi topo codes)")

    def code(v):
        parse_link(v)
        return str(v).strip().upper()
    links = _matrix("links", d["links"], n, path, code)
    for i in range(n):
        if links[i][i] != "X":
            raise TopologyError(f"topology file {path}: links[{i}][{i}] must be 'X' (a device to itself), "
                                f"got {links[i][i]!r}")
        for j in range(n):
            if links[i][j] != links[j][i]:
                raise TopologyError(f"topology file {path}: the link matrix must be symmetric: links[{i}][{j}]="
                                    f"{links[i][j]!r} but links[{j}][{i}]={links[j][i]!r}")

    def boolean(v):
        if not isinstance(v, bool):
            raise ValueError(f"expected true/false, got {v!r}")
        return v
    if "peer_access" in d:
        peer = _matrix("peer_access", d["peer_access"], n, path, boolean)
    else:
        peer = tuple(tuple(_default_peer(links[i][j]) for j in range(n)) for i in range(n))
    if "nvlink_state" in d:
        state = _matrix("nvlink_state", d["nvlink_state"], n, path, str)
    else:
        state = tuple(tuple("up" if links[i][j].startswith("NV") else "-" for j in range(n)) for i in range(n))
    cliques = tuple(tuple(devices[p].index for p in c) for c in compute_cliques(n, peer))
    return TopologySnapshot(
        source=f"file:{path}",
        devices=tuple(devices), links=links, nvlink_state=state, peer_access=peer,
        uva=bool(d.get("uva", True)), cliques=cliques, driver_version=d.get("driver_version"),
        cuda_version=d.get("cuda_version"), notes=tuple(d.get("notes", ())))


def load_file(path: str) -> TopologySnapshot:
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise TopologyError(f"topology file {path}: cannot read it ({e.strerror or e}); fix VT_TOPOLOGY_FILE") \
            from None
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise TopologyError(f"topology file {path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") \
            from None
    return from_dict(d, path)


def virtual_cpu(n: int) -> TopologySnapshot:
    devices = tuple(DeviceInfo(index=i, name="virtual CPU device", type="cpu", numa_node=None) for i in range(n))
    links = tuple(tuple("X" if i == j else "HOST" for j in range(n)) for i in range(n))
    return TopologySnapshot(
        source="virtual_cpu", devices=devices, links=links,
        nvlink_state=tuple(tuple("-" for _ in range(n)) for _ in range(n)),
        peer_access=tuple(tuple(True for _ in range(n)) for _ in range(n)), uva=True,
        cliques=(tuple(range(n)),) if n else (),
        notes=(f"VT_CPU_DEVICES={n}: virtual CPU devices cpu:0..cpu:{n - 1} share host memory",))


def empty(note: str) -> TopologySnapshot:
    return TopologySnapshot(source="none", devices=(), links=(), nvlink_state=(), peer_access=(), uva=False,
                            cliques=(), notes=(note,))


FIXTURES_DIR = __import__("os").path.join(__import__("os").path.dirname(__file__), "fixtures")
FIXTURES = ("dgx_h100_nvswitch", "pcie_2x4_nvlink_pairs", "single_gpu")


def fixture_path(name: str) -> str:
    """Path of a shipped topology fixture (``dgx_h100_nvswitch``, ``pcie_2x4_nvlink_pairs``, ``single_gpu``)."""
    if name not in FIXTURES:
        raise ValueError(f"unknown topology fixture {name!r}; shipped: {', '.join(FIXTURES)}")
    return __import__("os").path.join(FIXTURES_DIR, name + ".json")


_cache: dict = {}
_lock = threading.Lock()


def topology(device_type: str | None = None, *, refresh: bool = False) -> TopologySnapshot:
    """The current topology snapshot (cached; ``refresh=True`` re-reads the sources).

    ``device_type``: None picks the first source that applies (file, GPUs, virtual CPU devices);
    "cuda" or "cpu" asks for that kind only."""
    fl = _env.flags()
    key = (device_type, fl.topology_file, fl.cpu_devices)
    with _lock:
        if not refresh and key in _cache:
            return _cache[key]
    snap = _discover(device_type, fl)
    with _lock:
        _cache[key] = snap
    return snap


def _discover(device_type, fl) -> TopologySnapshot:
    if fl.topology_file and device_type in (None, "cuda"):
        return load_file(fl.topology_file)
    if device_type in (None, "cuda"):
        from .nvml import discover_gpus, gpu_presence
        present, why = gpu_presence()
        if present:
            return discover_gpus()
        if device_type == "cuda":
            return empty(why)
        if fl.cpu_devices > 0:
            snap = virtual_cpu(fl.cpu_devices)
            return TopologySnapshot(**{**snap.__dict__, "notes": (why,) + snap.notes})
        return empty(why)
    if fl.cpu_devices > 0:
        return virtual_cpu(fl.cpu_devices)
    return empty("no virtual CPU devices: set VT_CPU_DEVICES=N to create cpu:0..cpu:N-1")
