import os

import pytest

from vibetensor import _env


@pytest.fixture
def cpu_devices(request):
    """VT_CPU_DEVICES=n for one test (default 4), restored afterwards."""
    n = getattr(request, "param", 4)
    old = os.environ.get("VT_CPU_DEVICES")
    os.environ["VT_CPU_DEVICES"] = str(n)
    _env.reload()
    yield n
    if old is None:
        os.environ.pop("VT_CPU_DEVICES", None)
    else:
        os.environ["VT_CPU_DEVICES"] = old
    _env.reload()


@pytest.fixture
def topo_file():
    """Point VT_TOPOLOGY_FILE at a file for one test: ``topo_file(path)``."""
    old = os.environ.get("VT_TOPOLOGY_FILE")

    def set_(path):
        os.environ["VT_TOPOLOGY_FILE"] = str(path)
        _env.reload()
    yield set_
    if old is None:
        os.environ.pop("VT_TOPOLOGY_FILE", None)
    else:
        os.environ["VT_TOPOLOGY_FILE"] = old
    _env.reload()
