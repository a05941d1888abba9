"""vt.optim: optimizers (SGD, Adam, AdamW) and ``lr_scheduler`` (PyTorch's update rules and formats)."""
from . import lr_scheduler  # noqa: F401
from .adam import Adam, AdamW  # noqa: F401
from .optimizer import Optimizer  # noqa: F401
from .sgd import SGD  # noqa: F401
