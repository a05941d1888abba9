"""The original Fabric API: explicit cross-device add/mul, enable/disable/dry_run, stats and events,
inspect_topology/cliques, measure_bandwidth on virtual devices."""
import importlib
import json

import numpy as np
import pytest

import vibetensor as vt
from vibetensor import observe
from vibetensor.errors import DeviceMismatchError


def test_cross_device_add_mul_modes(cpu_devices):
    a = vt.tensor(np.arange(6.0).reshape(2, 3), device="cpu:0")
    b = vt.tensor(np.ones((2, 3)), device="cpu:1")
    vt.fabric.disable()
    assert not vt.fabric.is_enabled()
    with pytest.raises(DeviceMismatchError):
        vt.fabric.add(a, b)
    vt.fabric.enable("best_effort")
    try:
        assert vt.fabric.is_enabled()
        seq = observe.latest_seq() + 1
        s0 = vt.fabric.stats()
        out = vt.fabric.add(a, b, primary=b)
        assert out.device == vt.device("cpu:1")
        np.testing.assert_allclose(out.numpy(), np.arange(6.0).reshape(2, 3) + 1)
        out = vt.fabric.mul(a, b)
        assert out.device == vt.device("cpu:0")
        kinds = [e.kind for e in vt.fabric.events(seq)]
        assert observe.EventKind.FABRIC_COPY in kinds and observe.EventKind.FABRIC_OP in kinds
        s1 = vt.fabric.stats()
        assert s1.ops_hit - s0.ops_hit == 2 and s1.remote_bytes_read - s0.remote_bytes_read == 2 * a.nbytes
        assert s1.per_device["cpu:0"]["bytes_read_remote"] >= a.nbytes
        json.dumps(s1.to_dict())
        with pytest.raises(ValueError, match="primary"):
            vt.fabric.add(a, b, primary="cpu:2")
        vt.fabric.enable("dry_run")
        seq = observe.latest_seq() + 1
        with pytest.raises(DeviceMismatchError):
            vt.fabric.add(a, b)
        ev = vt.fabric.events(seq)
        assert ev and ev[-1].extra["dry_run"] and ev[-1].extra["would_copy"][0]["nbytes"] == b.nbytes
        with pytest.raises(ValueError, match="best_effort"):
            vt.fabric.enable("turbo")
    finally:
        vt.fabric.disable()


def test_events_mode_and_wait(cpu_devices):
    a = vt.ones(2, device="cpu:0")
    b = vt.ones(2, device="cpu:1")
    vt.fabric.enable()
    try:
        vt.fabric.set_events_mode("off")
        seq = observe.latest_seq() + 1
        vt.fabric.add(a, b)
        assert vt.fabric.events(seq) == []
        vt.fabric.set_events_mode("basic")
        vt.fabric.add(a, b)
        assert len(vt.fabric.events(seq, max_events=1)) == 1
        assert vt.fabric.wait_for_event_seq(seq, 10)
        assert not vt.fabric.wait_for_event_seq(observe.latest_seq() + 5, 10)
        with pytest.raises(ValueError):
            vt.fabric.set_events_mode("loud")
    finally:
        vt.fabric.disable()
        observe.set_mode("basic")


def test_inspect_topology_and_cliques(cpu_devices):
    d = vt.fabric.inspect_topology()
    json.dumps(d)
    if d["source"] == "virtual_cpu":
        assert vt.fabric.cliques() == [list(range(cpu_devices))]


def test_measure_bandwidth_virtual(cpu_devices, monkeypatch):
    monkeypatch.setenv("NCCL_P2P_DISABLE", "1")
    t = importlib.import_module("vibetensor.fabric.topo").virtual_cpu(2)
    rep = vt.fabric.measure_bandwidth(size_mb=1, reps=2, topo=t)
    assert rep.devices == ("cpu:0", "cpu:1") and len(rep.gbps) == 2
    assert all(v > 0 for row in rep.gbps for v in row)
    assert any("NCCL_P2P_DISABLE=1" in w for w in rep.warnings)


def test_bandwidth_link_warnings_on_fixture():
    from vibetensor.fabric.bandwidth import link_warnings
    from vibetensor.fabric.topo import from_dict
    t = vt.fabric.load_file(vt.fabric.fixture_path("pcie_2x4_nvlink_pairs"))
    gb = [[200.0] * 8 for _ in range(8)]
    gb[0][2] = 5.0                       # NV12 (~300 GB/s nominal) measured at 5
    w = link_warnings(t, gb)
    assert len(w) == 1 and "cuda:0 -> cuda:2" in w[0] and "NV12" in w[0]
    d = t.to_dict()
    d["peer_access"][1][0] = d["peer_access"][0][1] = False    # PIX pair without P2P
    w = link_warnings(from_dict(d), gb)
    assert any("cuda:0 -> cuda:1" in x and "PCIe switch" in x for x in w)


def test_measure_bandwidth_refuses_file_topology(topo_file):
    topo_file(vt.fabric.fixture_path("single_gpu"))
    with pytest.raises(RuntimeError, match="VT_TOPOLOGY_FILE"):
        vt.fabric.measure_bandwidth(topo=vt.fabric.topology(refresh=True))
