"""Python types as dtype arguments mean what they mean in PyTorch, whatever the default float dtype."""
import pytest

import vibetensor as vt

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("default", ["float32", "float64"])
@pytest.mark.parametrize("py", [float, int, bool])
def test_python_types_as_dtypes(default, py):
    vt.set_default_dtype(getattr(vt, default))
    torch.set_default_dtype(getattr(torch, default))
    try:
        for make_vt, make_t in ((lambda: vt.zeros(2, dtype=py), lambda: torch.zeros(2, dtype=py)),
                                (lambda: vt.ones(2).to(py), lambda: torch.ones(2).to(py))):
            assert make_vt().dtype.name == str(make_t().dtype).replace("torch.", "")
    finally:
        vt.set_default_dtype(vt.float32)
        torch.set_default_dtype(torch.float32)
