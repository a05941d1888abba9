import numpy as np
import pytest

import vibetensor as vt


def test_numpy_zero_copy_both_ways():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    t = vt.from_dlpack(a)
    t[0, 0] = 100.0
    assert a[0, 0] == 100.0
    b = np.from_dlpack(t)
    b[1, 1] = -5.0
    assert t[1, 1].item() == -5.0


def test_torch_zero_copy_cpu():
    torch = pytest.importorskip("torch")
    x = torch.arange(6, dtype=torch.float64).reshape(2, 3)
    t = vt.from_dlpack(x)
    x[0, 1] = 42.0
    assert t[0, 1].item() == 42.0
    y = torch.from_dlpack(t.T)  # non-contiguous view keeps its strides
    assert y.stride() == t.T.stride() and y[1, 0].item() == 42.0
    bf = torch.randn(4).to(torch.bfloat16)
    tb = vt.from_dlpack(bf)
    assert tb.dtype == vt.bfloat16
    np.testing.assert_array_equal(tb.float().numpy(), bf.float().numpy())


def test_requires_grad_refused():
    t = vt.randn(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="detach"):
        np.from_dlpack(t)


@pytest.mark.gpu
def test_cupy_and_torch_cuda_zero_copy():
    import cupy as cp
    torch = pytest.importorskip("torch")
    c = cp.arange(8, dtype=cp.float32)
    t = vt.from_dlpack(c)
    assert t.device.type == "cuda"
    c[0] = 7
    assert t[0].item() == 7
    x = torch.ones(5, device="cuda")
    tv = vt.from_dlpack(x)
    x[2] = 3
    assert tv[2].item() == 3
    back = torch.from_dlpack(tv)
    assert back.data_ptr() == x.data_ptr()
