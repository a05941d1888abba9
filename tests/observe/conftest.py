import pytest

import vibetensor.observe as obs
from vibetensor.observe.capture import _ev


@pytest.fixture(autouse=True)
def _fresh_ring():
    """Each test starts with an empty basic-mode ring of the default size, rank unset."""
    saved = (obs.mode(), obs.capacity(), _ev._rank, _ev._world_size)
    obs.set_mode("basic")
    obs.set_capacity(2000)
    obs.clear()
    obs.set_rank(None)
    _ev._world_size = None
    yield
    obs.set_mode(saved[0])
    obs.set_capacity(saved[1])
    obs.clear()
    _ev._rank, _ev._world_size = saved[2], saved[3]
