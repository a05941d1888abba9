import os

import pytest

import vibetensor as vt


@pytest.fixture(scope="session")
def world():
    """The MPI default group, initialised once per mpiexec run (only MPI tests request it)."""
    if os.environ.get("VT_IN_MPI_SUITE") != "1":
        pytest.skip("MPI tests run under mpiexec via tests/test_mpi_suite.py")
    dist = vt.collectives
    if not dist.is_initialized():
        dist.init_process_group("mpi", timeout=float(os.environ.get("VT_COLLECTIVE_TIMEOUT", "30")))
    g = dist.default_group()
    yield g


@pytest.fixture
def local_devices(monkeypatch):
    """Four virtual CPU devices and a fresh ``local`` world over them."""
    from vibetensor import _env
    monkeypatch.setenv("VT_CPU_DEVICES", "4")
    _env.reload()
    dist = vt.collectives
    if dist.is_initialized():
        dist.destroy_process_group()
    g = dist.init_process_group("local")
    yield g
    if dist.is_initialized():
        dist.destroy_process_group()
    monkeypatch.delenv("VT_CPU_DEVICES")
    _env.reload()
