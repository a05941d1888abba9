"""vt-topo as a subprocess: output and exit codes without GPUs, with virtual devices, fixtures, bad files."""
import json
import os
import subprocess
import sys

import pytest

from vibetensor.core import backend
from vibetensor.fabric import fixture_path

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def vt_topo(*args, **env):
    e = {k: v for k, v in os.environ.items() if k not in ("VT_CPU_DEVICES", "VT_TOPOLOGY_FILE")}
    e.update(env)
    e["PYTHONPATH"] = ROOT + os.pathsep + e.get("PYTHONPATH", "")
    p = subprocess.run([sys.executable, "-m", "vibetensor.fabric.cli", *args], capture_output=True, text=True,
                       env=e, timeout=60)
    return p.returncode, p.stdout, p.stderr


@pytest.mark.skipif(backend.cuda_available(), reason="checks the no-GPU message")
def test_no_gpu_says_so_and_exits_0():
    rc, out, err = vt_topo()
    assert rc == 0, err
    assert "No GPU found" in out and "VT_CPU_DEVICES" in out


@pytest.mark.skipif(backend.cuda_available(), reason="checks the no-GPU message")
def test_virtual_cpu_devices_shown():
    rc, out, err = vt_topo(VT_CPU_DEVICES="3")
    assert rc == 0, err
    assert "virtual CPU devices" in out
    for d in ("cpu:0", "cpu:1", "cpu:2"):
        assert d in out
    assert "{cpu:0, cpu:1, cpu:2}" in out


def test_fixture_table_matrix_and_json():
    rc, out, err = vt_topo(VT_TOPOLOGY_FILE=fixture_path("pcie_2x4_nvlink_pairs"))
    assert rc == 0, err
    assert "NVIDIA A100 80GB PCIe" in out and "NV12" in out and "SYS" in out
    assert "{cuda:0, cuda:1, cuda:2, cuda:3}  {cuda:4, cuda:5, cuda:6, cuda:7}" in out
    rc, out, err = vt_topo("--json", "--file", fixture_path("dgx_h100_nvswitch"))
    assert rc == 0, err
    d = json.loads(out)
    assert len(d["devices"]) == 8 and d["links"][0][7] == "NV18" and d["cliques"] == [list(range(8))]


def test_malformed_file_exits_nonzero_naming_file(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text('{"devices": [{"name": "gpu"}], "links": [["X", "PIX"]]}')
    rc, out, err = vt_topo(VT_TOPOLOGY_FILE=str(p))
    assert rc == 2
    assert str(p) in err and "1x1 matrix" in err


def test_explain_and_bandwidth_on_virtual_devices():
    rc, out, _ = vt_topo("--explain")
    assert rc == 0 and "busbw" in out and "algbw" in out and "NODE" in out
    rc, out, err = vt_topo("--bandwidth", "--size-mb", "1", VT_CPU_DEVICES="2")
    if backend.cuda_available():
        pytest.skip("the GPU topology takes precedence over virtual devices")
    assert rc == 0, err
    assert "Copy bandwidth, GB/s" in out and "Latency" in out


def test_nvml_error_exits_nonzero_with_cause(monkeypatch, capsys):
    """A broken driver (NVML init fails for another reason than 'no driver') is an error, not 'no GPU'."""
    from vibetensor.fabric import cli, nvml
    from vibetensor.fabric.topo import TopologyError
    monkeypatch.delenv("VT_TOPOLOGY_FILE", raising=False)

    def broken():
        raise TopologyError("NVML failed to initialise: Driver/library version mismatch; check the NVIDIA driver")
    monkeypatch.setattr(nvml, "gpu_presence", broken)
    assert cli.main([]) == 2
    err = capsys.readouterr().err
    assert "version mismatch" in err and "vt-topo: error" in err


def test_nvml_absent_vs_broken_classification(monkeypatch):
    import types
    from vibetensor.fabric import nvml
    from vibetensor.fabric.topo import TopologyError

    class NVMLError(Exception):
        def __init__(self, value):
            self.value = value
    fake = types.SimpleNamespace(NVMLError=NVMLError, NVML_ERROR_LIBRARY_NOT_FOUND=12,
                                 NVML_ERROR_DRIVER_NOT_LOADED=9, NVML_ERROR_NOT_FOUND=6)

    def init_absent():
        raise NVMLError(9)
    fake.nvmlInit = init_absent
    monkeypatch.setattr(nvml, "_pynvml", lambda: fake)
    present, why = nvml.gpu_presence()
    assert not present and "no GPU" in why

    def init_broken():
        raise NVMLError(999)
    fake.nvmlInit = init_broken
    with pytest.raises(TopologyError, match="NVML failed to initialise"):
        nvml.gpu_presence()
