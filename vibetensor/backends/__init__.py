"""``vt.backends.cuda.matmul.allow_tf32`` (default False, as PyTorch)."""
from . import cuda  # noqa: F401
