"""Topology snapshots from fixtures, files, virtual CPU devices; cliques, rings, mesh placement."""
import dataclasses
import json
import os

import pytest

import importlib

from vibetensor.fabric.placement import arrange, ring_order

T = importlib.import_module("vibetensor.fabric.topo")
FIX = T.FIXTURES_DIR


def fixture(name):
    return T.load_file(os.path.join(FIX, name + ".json"))


def test_nvswitch_fixture():
    t = fixture("dgx_h100_nvswitch")
    assert len(t) == 8 and t.device_type == "cuda"
    assert t.cliques == (tuple(range(8)),)
    assert all(t.link(i, j) == "NV18" for i in range(8) for j in range(8) if i != j)
    assert t.nvlinks(0, 7) == 18 and t.nvlink_state[0][5] == "up"
    assert t.devices[5].numa_node == 1 and t.devices[5].compute_capability == "9.0"
    # every pair is equal: rings keep index order, any mesh too
    assert ring_order(list(range(8)), topo=t) == list(range(8))
    assert arrange(list(range(8)), (2, 4), topo=t) == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_pcie_fixture_cliques_and_rings():
    t = fixture("pcie_2x4_nvlink_pairs")
    assert t.cliques == ((0, 1, 2, 3), (4, 5, 6, 7))
    assert t.link(0, 2) == "NV12" and t.link(0, 1) == "PIX" and t.link(1, 2) == "NODE" and t.link(0, 4) == "SYS"
    assert not t.can_access_peer(0, 4) and t.can_access_peer(1, 3)
    r = ring_order([0, 1, 2, 3], topo=t)
    assert sorted(r) == [0, 1, 2, 3] and r[0] == 0
    pos = {d: i for i, d in enumerate(r)}
    assert (pos[0] - pos[2]) % 4 in (1, 3), f"NVLink pair 0-2 not adjacent in ring {r}"
    # the ring keeps the PIX pairs adjacent too: no hop slower than NODE
    assert min(t.score(r[i], r[(i + 1) % 4]) for i in range(4)) >= T.link_score("NODE")
    r8 = ring_order(list(range(8)), topo=t)
    cross = sum(1 for i in range(8) if t.link(r8[i], r8[(i + 1) % 8]) == "SYS")
    assert cross == 2, f"an 8-ring should cross sockets exactly twice, got {r8}"


def test_pcie_fixture_mesh_axes_on_nvlink_pairs():
    t = fixture("pcie_2x4_nvlink_pairs")
    assert sorted(arrange(list(range(8)), (2,), topo=t)) == [0, 2]      # a 2-device axis -> the NVLink pair
    m = arrange(list(range(8)), (4, 2), topo=t)
    assert sorted(map(sorted, m)) == [[0, 2], [1, 3], [4, 6], [5, 7]]
    m = arrange(list(range(8)), (2, 4), topo=t)
    assert [sorted(r) for r in m] == [[0, 1, 2, 3], [4, 5, 6, 7]]         # inner axis inside a clique
    assert sorted(arrange(list(range(8)), (4,), topo=t)) == [0, 1, 2, 3]  # a 4-device mesh stays in a socket


def test_single_gpu_fixture():
    t = fixture("single_gpu")
    assert len(t) == 1 and t.cliques == ((0,),) and t.links == (("X",),)
    assert ring_order([0], topo=t) == [0]


def test_snapshot_is_frozen_and_json_round_trips(tmp_path):
    t = fixture("pcie_2x4_nvlink_pairs")
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.uva = False
    p = tmp_path / "t.json"
    p.write_text(t.to_json())
    t2 = T.load_file(str(p))
    assert t2.links == t.links and t2.peer_access == t.peer_access and t2.cliques == t.cliques
    assert t2.devices == t.devices
    json.loads(t.to_json())


def test_topology_env_sources(cpu_devices, topo_file):
    v = T.topology("cpu", refresh=True)
    assert v.source == "virtual_cpu" and len(v) == cpu_devices and v.cliques == (tuple(range(cpu_devices)),)
    assert v.link(0, 1) == "HOST"
    assert ring_order(["cpu:2", "cpu:0", "cpu:1"]) == ["cpu:2", "cpu:0", "cpu:1"]  # no preference: as given
    topo_file(os.path.join(FIX, "single_gpu.json"))
    assert T.topology(refresh=True).source.startswith("file:")


@pytest.mark.parametrize("content, needle", [
    ("not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    ('{"links": [["X"]]}', "'devices'"),
    ('{"devices": [{"name": "a"}]}', "missing 'links'"),
    ('{"devices": [{"name": "a"}, {"name": "b"}], "links": [["X", "NV2"], ["PIX", "X"]]}', "symmetric"),
    ('{"devices": [{"name": "a"}, {"name": "b"}], "links": [["X", "NV2"]]}', "2x2 matrix"),
    ('{"devices": [{"name": "a"}], "links": [["FOO"]]}', "unknown link code 'FOO'"),
    ('{"devices": [{"name": "a"}], "links": [["PIX"]]}', "must be 'X'"),
    ('{"devices": [{"name": "a", "colour": 1}], "links": [["X"]]}', "unknown field"),
    ('{"devices": [{"name": "a"}], "links": [["X"]], "peer_access": [["yes"]]}', "true/false"),
    ('{"devices": [{"name": "a", "index": 0}, {"name": "b", "index": 0}], "links": [["X","SYS"],["SYS","X"]]}',
     "duplicate device indices"),
])
def test_malformed_file_errors_name_file_and_problem(tmp_path, content, needle):
    p = tmp_path / "bad_topo.json"
    p.write_text(content)
    with pytest.raises(T.TopologyError) as e:
        T.load_file(str(p))
    assert str(p) in str(e.value) and needle in str(e.value)


def test_missing_file_and_link_codes():
    with pytest.raises(T.TopologyError, match="cannot read"):
        T.load_file("/nonexistent/topo.json")
    assert T.parse_link("nv4") == (T.LinkKind.NVLINK, 4)
    assert T.link_score("NV2") > T.link_score("PIX") > T.link_score("PXB") > T.link_score("PHB") > \
        T.link_score("NODE") > T.link_score("SYS")
    with pytest.raises(ValueError, match="unknown link code"):
        T.parse_link("NVX")


def test_ring_order_greedy_beyond_exhaustive_limit():
    # 10 devices, NVLink pairs (0,5) (1,6) ...: the greedy+2-opt ring keeps every pair adjacent
    n = 10
    def code(i, j):
        if i == j:
            return "X"
        return "NV4" if abs(i - j) == 5 else "SYS"
    d = {"devices": [{"name": f"g{i}"} for i in range(n)], "links": [[code(i, j) for j in range(n)] for i in range(n)],
         "peer_access": [[True] * n for _ in range(n)]}
    t = T.from_dict(d)
    r = ring_order(list(range(n)), topo=t)
    assert sorted(r) == list(range(n))
    nv = sum(1 for i in range(n) if t.link(r[i], r[(i + 1) % n]).startswith("NV"))
    assert nv == 5, r
