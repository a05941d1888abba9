"""DeviceMesh construction, errors, init_device_mesh on virtual CPU devices and on fixtures."""
import pytest

from vibetensor.core.device import Device
from vibetensor.fabric import DeviceMesh, fixture_path, init_device_mesh


def test_mesh_shapes_and_coords(cpu_devices):
    m = DeviceMesh([["cpu:0", "cpu:1"], ["cpu:2", "cpu:3"]], ("dp", "tp"))
    assert m.shape == (2, 2) and m.ndim == 2 and m.size() == 4 and m.size("tp") == 2
    assert m.device_at(1, 0) == Device("cpu", 2) and m.coords(3) == (1, 1) and m.flat_index((1, 0)) == 2
    assert m.mesh == [[Device("cpu", 0), Device("cpu", 1)], [Device("cpu", 2), Device("cpu", 3)]]
    flat = DeviceMesh(["cpu:0", "cpu:1", "cpu:2", "cpu:3"], ("a", "b"), shape=(2, 2))
    assert flat == m
    torch_style = DeviceMesh("cpu", [0, 1, 2], mesh_dim_names=("x",))
    assert torch_style.devices == (Device("cpu", 0), Device("cpu", 1), Device("cpu", 2))
    assert "DeviceMesh('cpu'" in repr(m)


@pytest.mark.parametrize("devices, kw, needle", [
    (["cpu:0", "cpu:0"], {}, "appears more than once"),
    (["cpu:0", "cpu:9"], {}, "does not exist"),
    ([["cpu:0", "cpu:1"], ["cpu:2"]], {}, "ragged"),
    (["cpu:0", "cpu:1"], {"axis_names": ("a", "b")}, "axis names"),
    (["cpu:0", "cpu:1", "cpu:2"], {"shape": (2, 2)}, "needs 4 devices"),
    (["cpu", "cpu:1"], {}, "mixes plain 'cpu'"),
    ([], {}, "no devices"),
])
def test_mesh_errors(cpu_devices, devices, kw, needle):
    with pytest.raises(ValueError, match=needle):
        DeviceMesh(devices, **kw)


def test_unknown_cuda_device_against_topology(topo_file):
    topo_file(fixture_path("single_gpu"))
    with pytest.raises(ValueError, match=r"unknown device\(s\) \['cuda:3'\]"):
        DeviceMesh(["cuda:0", "cuda:3"])
    with pytest.raises(ValueError, match="mixed types"):
        DeviceMesh(["cuda:0", "cpu"])


def test_init_device_mesh_cpu(cpu_devices):
    m = init_device_mesh("cpu", (2, 2), mesh_dim_names=("dp", "tp"))
    assert m.shape == (2, 2) and sorted(d.index for d in m.devices) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="needs 8 cpu devices, 4 available"):
        init_device_mesh("cpu", (8,))
    with pytest.raises(ValueError, match="device_type"):
        init_device_mesh("tpu", (2,))


def test_init_device_mesh_follows_fixture_topology(topo_file):
    topo_file(fixture_path("pcie_2x4_nvlink_pairs"))
    m = init_device_mesh("cuda", (2,))
    assert sorted(d.index for d in m.devices) == [0, 2]     # the NVLink pair
    m = init_device_mesh("cuda", (4, 2), mesh_dim_names=("dp", "tp"))
    pairs = sorted(sorted(d.index for d in row) for row in m.mesh)
    assert pairs == [[0, 2], [1, 3], [4, 6], [5, 7]]
