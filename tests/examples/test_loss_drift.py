"""benchmarks/loss_drift.py on the CPU at a toy size: vibetensor's GPT training trajectory (forward,
autograd, AdamW) follows PyTorch's float64 one step by step, in train_gpt's batch order."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import vibetensor as vt

torch = pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parents[2]
for d in (ROOT / "benchmarks", ROOT / "examples"):
    if str(d) not in sys.path:
        sys.path.insert(0, str(d))

import loss_drift  # noqa: E402

TOY = (16, 2, 2, 2, 8, 36)  # dim, layers, heads, batch, seq, vocab


def test_order_follows_train_gpt():
    assert loss_drift.order(5, 8) == [0, 1, 2, 0, 1, 2, 3, 4]
    assert loss_drift.order(10, 3)[-4:] == [0, 1, 2, 0]
    assert loss_drift.order(2, 2) == [0, 1, 0, 0, 1]  # fewer batches than warm-up steps


def test_vt_float32_follows_torch_float64():
    steps = 6
    batches = loss_drift.data(TOY, steps, seed=3)
    vt.manual_seed(1)
    dim, layers, heads, batch, seq, vocab = TOY
    init = loss_drift.GPT(loss_drift.GPTConfig(vocab=vocab, seq=seq, dim=dim, layers=layers, heads=heads)).state_dict()
    ours = np.array(loss_drift.vt_losses(TOY, batches, steps, init, "cpu"))
    ref = np.array(loss_drift.torch_losses(TOY, batches, steps, init, "cpu", torch.float64))
    assert ours.shape == ref.shape == (steps,)
    np.testing.assert_allclose(ours, ref, rtol=1e-5)
    assert abs(ours[-1] - ours[0]) > 1e-4, f"the toy model did not train: {ours}"
