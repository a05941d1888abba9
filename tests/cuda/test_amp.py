"""Autocast dtypes per op and GradScaler logic (CPU-side: autocast on CPU with bfloat16; the same
code path serves CUDA, exercised by the gpu-marked tests)."""
import math

import numpy as np
import pytest

import vibetensor as vt


def test_autocast_casts_matmul_low_and_softmax_fp32():
    a = vt.randn(4, 8, requires_grad=True)
    w = vt.randn(8, 3, requires_grad=True)
    with vt.autocast("cpu", dtype=vt.bfloat16):
        y = a @ w
        assert y.dtype == vt.bfloat16
        s = vt.softmax(y, dim=-1)
        assert s.dtype == vt.float32
        z = y + 1.0  # promotion only
        assert z.dtype == vt.bfloat16
    assert (a @ w).dtype == vt.float32  # off outside the region
    s.sum().backward()
    assert a.grad.dtype == vt.float32 and w.grad.dtype == vt.float32


def test_autocast_disabled_region_and_bad_dtype():
    a = vt.randn(2, 2)
    with vt.autocast("cpu", dtype=vt.bfloat16):
        with vt.autocast("cpu", enabled=False):
            assert (a @ a).dtype == vt.float32
        assert (a @ a).dtype == vt.bfloat16
    with pytest.raises(ValueError, match="float16 or bfloat16"):
        vt.autocast("cpu", dtype=vt.float64)


class _Opt:
    def __init__(self, params):
        self.param_groups = [{"params": params}]
        self.steps = 0

    def step(self):
        self.steps += 1


def test_grad_scaler_skips_inf_steps_and_backs_off():
    p = vt.zeros(3, requires_grad=True)
    s = vt.cuda.amp.GradScaler(init_scale=2.0 ** 16, growth_interval=2)
    assert s.get_scale() == 65536.0
    opt = _Opt([p])
    p.grad = vt.tensor([1.0, float("inf"), 2.0])
    s.step(opt)
    s.update()
    assert opt.steps == 0 and s.get_scale() == 32768.0
    p.grad = vt.tensor([32768.0, 0.0, 65536.0])
    s.step(opt)
    np.testing.assert_allclose(p.grad.numpy(), [1.0, 0.0, 2.0])
    s.update()
    p.grad = vt.tensor([1.0, 1.0, 1.0])
    s.step(opt)
    s.update()
    assert opt.steps == 2 and s.get_scale() == 65536.0  # grew after growth_interval=2 good steps
    p.grad = vt.tensor([float("nan"), 1.0, 1.0])
    s.step(opt)
    s.update()
    assert opt.steps == 2 and s.get_scale() == 32768.0


def test_grad_scaler_scale_multiplies_loss():
    s = vt.cuda.amp.GradScaler(init_scale=8.0)
    assert s.scale(vt.tensor(1.5)).item() == 12.0
    assert not math.isnan(s.get_scale())
