"""On a GPU machine: the real topology, vt-topo (with --bandwidth), sharded ops on cuda meshes."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import vibetensor as vt
import vibetensor.nn.functional as F
from vibetensor.fabric import DeviceMesh, Replicate, Shard, distribute_tensor, topology

pytestmark = pytest.mark.gpu
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _clean_env():
    e = {k: v for k, v in os.environ.items() if k not in ("VT_CPU_DEVICES", "VT_TOPOLOGY_FILE")}
    e["PYTHONPATH"] = ROOT + os.pathsep + e.get("PYTHONPATH", "")
    return e


def test_real_topology():
    t = topology("cuda", refresh=True)
    from vibetensor.core import backend
    n = backend.cuda_device_count()
    assert t.source in ("nvml", "cuda") and len(t) == n
    assert all(t.links[i][i] == "X" for i in range(n))
    assert sorted(i for c in t.cliques for i in c) == list(range(n))
    assert all(d.memory_bytes and d.memory_bytes > 0 for d in t.devices)
    json.loads(t.to_json())


def test_vt_topo_and_bandwidth_cli():
    p = subprocess.run([sys.executable, "-m", "vibetensor.fabric.cli", "--bandwidth", "--size-mb", "64"],
                       capture_output=True, text=True, env=_clean_env(), timeout=300)
    print(p.stdout)
    print(p.stderr, file=sys.stderr)
    assert p.returncode == 0, p.stderr
    assert "Link matrix" in p.stdout and "Copy bandwidth, GB/s" in p.stdout and "GPU0" in p.stdout


def test_measure_bandwidth_api():
    rep = vt.fabric.measure_bandwidth(size_mb=16, reps=3, topo=topology("cuda", refresh=True))
    assert rep.device_type == "cuda" and all(rep.gbps[i][i] > 1.0 for i in range(len(rep.devices)))


def test_sharded_ops_mesh_of_one_gpu():
    mesh = DeviceMesh(["cuda:0"])
    x, w1, w2 = np.random.randn(4, 6), np.random.randn(8, 6), np.random.randn(3, 8)
    ps = [vt.tensor(a, dtype=vt.float32, device="cuda:0", requires_grad=True) for a in (x, w1, w2)]
    ref = F.linear(F.relu(F.linear(ps[0], ps[1])), ps[2]).softmax(-1).sum()
    ref.backward()
    dts = [distribute_tensor(vt.tensor(a, dtype=vt.float32, device="cuda:0", requires_grad=True), mesh, [pl])
           for a, pl in zip((x, w1, w2), (Replicate(), Shard(0), Shard(1)))]
    out = F.linear(F.relu(F.linear(dts[0], dts[1])), dts[2]).softmax(-1).sum()
    np.testing.assert_allclose(out.item(), ref.item(), rtol=1e-5)
    out.backward()
    for d, p in zip(dts, ps):
        np.testing.assert_allclose(d.grad.full_tensor().cpu().numpy(), p.grad.cpu().numpy(), rtol=1e-4, atol=1e-5)
    assert isinstance(dts[1].to_local(), vt.Tensor) and dts[1].to_local().device == vt.device("cuda:0")


def test_sharded_ops_all_local_gpus():
    from vibetensor.core import backend
    n = backend.cuda_device_count()
    if n < 2:
        pytest.skip("needs 2+ GPUs")
    mesh = vt.fabric.init_device_mesh("cuda", (n,))
    a = np.random.randn(4 * n + 1, 5)
    d = distribute_tensor(vt.tensor(a, dtype=vt.float32, device="cuda:0"), mesh, [Shard(0)])
    assert [t.device for t in d.to_local()] == list(mesh.devices)
    r = (d * 2).redistribute(mesh, [Replicate()])
    for t in r.to_local():
        np.testing.assert_allclose(t.cpu().numpy(), 2 * a, rtol=1e-6)
    np.testing.assert_allclose(d.sum().item(), a.sum(), rtol=1e-4)
