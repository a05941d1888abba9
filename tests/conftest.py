import os

import numpy as np
import pytest

import vibetensor as vt
from vibetensor.core import backend


def pytest_collection_modifyitems(config, items):
    have_gpu = backend.cuda_available()
    skip_gpu = pytest.mark.skip(reason="no CUDA GPU (CuPy + driver) available")
    in_mpi = os.environ.get("VT_IN_MPI_SUITE") == "1"
    skip_mpi = pytest.mark.skip(reason="MPI tests run under mpiexec via tests/test_mpi_suite.py")
    for item in items:
        if "gpu" in item.keywords and not have_gpu:
            item.add_marker(skip_gpu)
        if "mpi" in item.keywords and not in_mpi:
            item.add_marker(skip_mpi)


@pytest.fixture(autouse=True)
def _seed():
    vt.manual_seed(0)
    np.random.seed(0)
    yield
    backend._pending.clear()  # a deferred CUDA check a test left behind must not fail the next test
    backend._inflight.clear()


DEVICES = ["cpu"] + (["cuda"] if backend.cuda_available() else [])


@pytest.fixture(params=DEVICES)
def device(request):
    """Runs a test on CPU and, where a GPU is present, on CUDA."""
    return request.param
