"""Shared plumbing for the PyTorch twins of examples/*.py: the same arguments (a subset), data
(the examples' own numpy generators and batch streams), schedule and seed; the model starts from
the very weights the vibetensor example starts from (built with vt under the same seed, copied)."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "examples"))
sys.path.insert(1, ROOT)


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", default="auto", help="cpu | cuda | auto")
    p.add_argument("--config", default="small", choices=["small", "full"])
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--result-json", default=None)
    return p


def device(args) -> torch.device:
    want = args.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if args.threads:
        torch.set_num_threads(args.threads)
    return torch.device(want)


def vt_init_weights(build_vt_model, seed: int) -> dict:
    """The parameters the vibetensor example starts from: vt.manual_seed(seed), then build the model
    exactly as the example does (its setup seeds before construction)."""
    import vibetensor as vt
    vt.manual_seed(seed)
    m = build_vt_model()
    return {k: torch.from_numpy(np.ascontiguousarray(v.detach().cpu().numpy())) for k, v in m.state_dict().items()}


def load_weights(model: torch.nn.Module, weights: dict, dev) -> torch.nn.Module:
    model.load_state_dict(weights, strict=True)
    return model.to(dev)


class Timer:
    """Per-step wall time, the step ending when loss.item() returns (as the vt examples measure)."""

    def __init__(self):
        self.total, self.n, self.first_loss, self.loss = 0.0, 0, None, None
        self._t = None

    def start(self):
        self._t = time.perf_counter()

    def stop(self, loss: float):
        self.total += time.perf_counter() - self._t
        self.n += 1
        self.first_loss = loss if self.first_loss is None else self.first_loss
        self.loss = loss

    @property
    def ms(self) -> float:
        return 1000 * self.total / max(1, self.n)


def finish(args, result: dict):
    result = {"framework": "torch", "torch": torch.__version__, **result}
    print("RESULT " + json.dumps(result, sort_keys=True))
    if args.result_json:
        with open(args.result_json, "w") as f:
            json.dump(result, f, sort_keys=True)
    return result
