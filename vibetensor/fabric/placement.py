"""Placement policy: order rings along the fastest links and lay mesh axes onto cliques.

Scores come from the topology's link matrix (NVLink by link count above PCIe paths; pairs without
peer access count half). Without topology information devices keep index order.
"""
from __future__ import annotations

import itertools
import math

from ..core.device import Device, device as _as_device
from .topo import TopologySnapshot, topology

_EXHAUSTIVE_MAX = 8  # 7!/2 rings to score at most


def _index(d) -> tuple[str, int | None]:
    if isinstance(d, int) and not isinstance(d, bool):
        return "cuda", d
    dv = d if isinstance(d, Device) else _as_device(d)
    return dv.type, dv.index


def _topo_for(kind: str) -> TopologySnapshot | None:
    try:
        t = topology(kind)
    except Exception:  # noqa: BLE001 - no topology information: index order
        return None
    return t if t.devices else None


def _scorer(topo, ids):
    if topo is None:
        return None
    known = {d.index for d in topo.devices}
    if not all(i in known for i in ids):
        return None
    return topo.score


def _ring_key(order, score):
    links = [score(order[k], order[(k + 1) % len(order)]) for k in range(len(order))]
    return (min(links), sum(links))


def ring_order(devices, topo: TopologySnapshot | None = None) -> list:
    """``devices`` reordered so that neighbours in the ring share the fastest links.

    Maximises the slowest hop first, then the total; ties keep index order. The first device stays
    first. Devices (Device, "cuda:1", or CUDA ordinals) come back as given; unknown topology -> as given."""
    devices = list(devices)
    if len(devices) <= 2:
        return devices
    keys = [_index(d) for d in devices]
    kinds = {k for k, _ in keys}
    if len(kinds) != 1:
        raise ValueError(f"ring_order: devices of different types {sorted(kinds)} cannot form one ring")
    ids = [i for _, i in keys]
    if any(i is None for i in ids):
        return devices
    score = _scorer(topo if topo is not None else _topo_for(kinds.pop()), ids)
    if score is None:
        return devices
    pos = list(range(len(devices)))
    sc = lambda a, b: score(ids[a], ids[b])  # noqa: E731
    if len(devices) <= _EXHAUSTIVE_MAX:
        best, best_key = pos, _ring_key(pos, sc)
        for rest in itertools.permutations(pos[1:]):
            if rest[0] > rest[-1]:
                continue  # the same ring backwards
            cand = [0, *rest]
            k = _ring_key(cand, sc)
            if k > best_key:
                best, best_key = cand, k
    else:
        best = _greedy_ring(pos, sc)
    return [devices[p] for p in best]


def _greedy_ring(pos, sc):
    order = [pos[0]]
    left = pos[1:]
    while left:
        nxt = max(left, key=lambda j: (sc(order[-1], j), -j))
        order.append(nxt)
        left.remove(nxt)
    improved = True
    while improved:  # 2-opt on the ring key
        improved = False
        for i in range(1, len(order) - 1):
            for j in range(i + 1, len(order)):
                cand = order[:i] + order[i:j + 1][::-1] + order[j + 1:]
                if _ring_key(cand, sc) > _ring_key(order, sc):
                    order, improved = cand, True
    return order


def _group_gain(g, cand, sc, peer):
    allpeer = all(peer(cand, m) for m in g)
    return (allpeer, sum(sc(cand, m) for m in g))


def _grow(seed, pool, size, sc, peer):
    group = [seed]
    left = [p for p in pool if p != seed]
    while len(group) < size:
        nxt = max(left, key=lambda j: (_group_gain(group, j, sc, peer), -j))
        group.append(nxt)
        left.remove(nxt)
    return group


def _subset_key(group, sc, peer):
    pairs = list(itertools.combinations(group, 2))
    if not pairs:
        return (True, 0.0, 0.0)
    return (all(peer(a, b) for a, b in pairs), min(sc(a, b) for a, b in pairs), sum(sc(a, b) for a, b in pairs))


def arrange(devices, mesh_shape, topo: TopologySnapshot | None = None):
    """Nested lists of ``devices`` in ``mesh_shape``: inner axes on cliques / NVLink groups, rings ordered.

    With more devices than the mesh needs, picks the best-connected subset."""
    devices = list(devices)
    mesh_shape = tuple(int(s) for s in mesh_shape)
    need = math.prod(mesh_shape)
    if need > len(devices):
        raise ValueError(f"a mesh of shape {mesh_shape} needs {need} devices but only {len(devices)} are available: "
                         f"{[str(d) for d in devices]}")
    keys = [_index(d) for d in devices]
    ids = [i for _, i in keys]
    score = None
    if None not in ids and len({k for k, _ in keys}) == 1:
        t = topo if topo is not None else _topo_for(keys[0][0])
        score = _scorer(t, ids)
        peer_of = t.can_access_peer if score is not None else None
    pos = list(range(len(devices)))
    if score is None:
        chosen = pos[:need]
        return _nest([devices[p] for p in chosen], mesh_shape)
    sc = lambda a, b: score(ids[a], ids[b])  # noqa: E731
    peer = lambda a, b: peer_of(ids[a], ids[b])  # noqa: E731
    if need < len(devices):
        cands = [_grow(s, pos, need, sc, peer) for s in pos]
        chosen = sorted(max(cands, key=lambda g: (_subset_key(g, sc, peer), [-x for x in sorted(g)])))
    else:
        chosen = pos
    tree = _split(chosen, mesh_shape, sc, peer)
    return _map(tree, devices)


def _split(pos, shape, sc, peer):
    if len(shape) == 1:
        ring = ring_order(list(range(len(pos))), topo=_Local(pos, sc, peer))
        return [pos[r] for r in ring]
    g = math.prod(shape[1:])
    left = sorted(pos)
    groups = []
    while left:
        grp = _grow(left[0], left, g, sc, peer)
        for x in grp:
            left.remove(x)
        groups.append(sorted(grp))
    return [_split(grp, shape[1:], sc, peer) for grp in groups]


class _Local:
    """A scorer over positions for ring_order (duck-types the snapshot's score/devices)."""

    def __init__(self, pos, sc, peer):
        self.pos = pos
        self.devices = [type("D", (), {"index": i})() for i in range(len(pos))]
        self._sc = sc

    def score(self, a, b):
        return self._sc(self.pos[a], self.pos[b])


def _map(tree, devices):
    if isinstance(tree, list):
        return [_map(t, devices) for t in tree]
    return devices[tree]


def _nest(flat, shape):
    if len(shape) == 1:
        return list(flat)
    step = math.prod(shape[1:])
    return [_nest(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]
