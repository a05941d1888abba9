"""``vt.nn.parallel``: DistributedDataParallel (gradient buckets reduced while backward runs)."""
from .distributed import DistributedDataParallel  # noqa: F401

DDP = DistributedDataParallel
