"""Which head dims reach the flash kernels (``kernels.flash.flash_ok``), checked on the CPU with numpy
arrays standing in for CuPy's: the CUDA-core and tiled float32 kernels exist for FLASH_DIMS only, the
tensor-core ones (float16/bfloat16 on sm_80+) for TC_DIMS as well. The GPU tests
(tests/cuda/test_fused_attention.py) run the kernels themselves."""
import numpy as np
import pytest

ml_dtypes = pytest.importorskip("ml_dtypes")
from vibetensor.cuda.kernels import flash as KF  # noqa: E402


def _qkv(dtype, d, tq=5, tk=7):
    return (np.zeros((2, 3, tq, d), dtype), np.zeros((2, 3, tk, d), dtype), np.zeros((2, 3, tk, d), dtype))


@pytest.mark.parametrize("sm80", [True, False], ids=["sm80", "older"])
@pytest.mark.parametrize("d", [8, 16, 48, 64, 80, 96, 128, 160, 256])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, ml_dtypes.bfloat16], ids=["f32", "f16", "bf16"])
def test_flash_head_dims(dtype, d, sm80, monkeypatch):
    half = np.dtype(dtype) != np.float32
    monkeypatch.setattr(KF, "tensor_cores", lambda dt: half and sm80)
    want = d in (16, 32, 64) or (half and sm80 and d in (96, 128))
    assert KF.flash_ok(*_qkv(dtype, d)) is want


def test_flash_ok_rejects_mismatches(monkeypatch):
    monkeypatch.setattr(KF, "tensor_cores", lambda dt: True)
    q, k, v = _qkv(np.float16, 128)
    assert KF.flash_ok(q, k, v)
    assert not KF.flash_ok(q, k, v[..., :64])             # k and v of different shapes
    assert not KF.flash_ok(q[..., :96], k, v)             # q's head dim is not k's
    assert not KF.flash_ok(q, k.astype(np.float32), v)    # mixed dtypes
    assert not KF.flash_ok(q[:1], k, v)                   # batch dims differ
    assert not KF.flash_ok(q[..., :0, :], k, v)           # no query rows
