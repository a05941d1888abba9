"""``vt.autograd``: grad, backward, Function, gradcheck."""
from ..core.autograd import grad, backward, Node, AccumulateGrad  # noqa: F401
from ..core.function import Function, gradcheck  # noqa: F401
from ..core.grad_mode import no_grad, enable_grad, set_grad_enabled  # noqa: F401
