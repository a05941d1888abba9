"""Layer modules."""
from .activation import GELU, LeakyReLU, LogSoftmax, ReLU, ReLU6, Sigmoid, SiLU, Softmax, Softplus, Tanh  # noqa: F401
from .attention import MultiheadAttention  # noqa: F401
from .container import ModuleDict, ModuleList, ParameterDict, ParameterList, Sequential  # noqa: F401
from .conv import AvgPool2d, Conv2d, MaxPool2d  # noqa: F401
from .linear import Flatten, Identity, Linear, Unflatten  # noqa: F401
from .loss import CrossEntropyLoss, L1Loss, MSELoss, NLLLoss  # noqa: F401
from .normalization import LayerNorm, RMSNorm  # noqa: F401
from .sparse import Dropout, Embedding  # noqa: F401

__all__ = [
    "GELU", "LeakyReLU", "LogSoftmax", "ReLU", "ReLU6", "Sigmoid", "SiLU", "Softmax", "Softplus", "Tanh",
    "MultiheadAttention", "ModuleDict", "ModuleList", "ParameterDict", "ParameterList", "Sequential", "AvgPool2d", "Conv2d", "MaxPool2d",
    "Flatten", "Identity", "Linear", "Unflatten", "CrossEntropyLoss", "L1Loss", "MSELoss", "NLLLoss",
    "LayerNorm", "RMSNorm", "Dropout", "Embedding",
]
