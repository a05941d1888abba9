"""Optimizer base: param_groups, per-parameter state, zero_grad, and PyTorch-format state dicts."""
from __future__ import annotations

from collections import defaultdict
from copy import deepcopy
from itertools import chain

from ..core.grad_mode import no_grad
from ..core.tensor import Tensor


class _RequiredParameter:
    def __repr__(self):
        return "<required parameter>"


required = _RequiredParameter()


def bump_step(s) -> float:
    """``s += 1`` for a per-parameter step counter, returning the new step as a float. A CPU counter (PyTorch
    keeps it on the CPU) is bumped in place without a dispatched op: the sum rounds once into the counter's
    dtype, as ``add_`` does, and a model's worth of dispatches per step was a visible part of small steps."""
    import numpy as np  # noqa: PLC0415
    if type(s._data) is np.ndarray and not s._is_sharded:
        s._data.fill(float(s._data) + 1.0)
        s._vc.v += 1
        return float(s._data)
    s.add_(1)
    return s.item()


class Optimizer:
    """``Optimizer(params, defaults)``: ``params`` is an iterable of tensors, of (name, tensor) pairs, or of
    dicts (param groups) with per-group options. Subclasses implement ``step``."""

    def __init__(self, params, defaults: dict):
        self.defaults = defaults
        self.state = defaultdict(dict)
        self.param_groups = []
        if isinstance(params, Tensor):
            raise TypeError(f"params argument given to the optimizer should be an iterable of Tensors or dicts, "
                            f"but got {type(params).__name__}; wrap it in a list")
        param_groups = list(params)
        if len(param_groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(param_groups[0], dict):
            param_groups = [{"params": param_groups}]
        for g in param_groups:
            self.add_param_group(g)

    def __repr__(self):
        s = type(self).__name__ + " ("
        for i, group in enumerate(self.param_groups):
            s += f"\nParameter Group {i}"
            for k in sorted(group):
                if k not in ("params", "param_names"):
                    s += f"\n    {k}: {group[k]}"
        return s + "\n)"

    def __getstate__(self):
        return {"defaults": self.defaults, "state": self.state, "param_groups": self.param_groups}

    def __setstate__(self, state):
        self.__dict__.update(state)

    def add_param_group(self, param_group: dict):
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, but the ordering "
                            "of tensors in sets will change between runs; use a list instead")
        else:
            params = list(params)
        names = []
        if params and isinstance(params[0], tuple):
            names = [n for n, _ in params]
            params = [p for _, p in params]
        param_group = dict(param_group)
        param_group["params"] = params
        if names:
            param_group["param_names"] = names
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but one of the params is "
                                f"{type(p).__name__}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor; optimize the leaf it was computed from")
        for name, default in self.defaults.items():
            if default is required and name not in param_group:
                raise ValueError(f"parameter group didn't specify a value of required optimization parameter "
                                 f"{name}")
            param_group.setdefault(name, default)
        if len({id(p) for p in params}) != len(params):
            raise ValueError("optimizer contains a parameter group with duplicate parameters")
        seen = set()
        for g in self.param_groups:
            seen.update(id(p) for p in g["params"])
        if any(id(p) in seen for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(param_group)

    def zero_grad(self, set_to_none: bool = True):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    if p.grad.grad_fn is not None:
                        p.grad = p.grad.detach()
                    with no_grad():
                        p.grad.zero_()

    def step(self, closure=None):
        raise NotImplementedError(f"{type(self).__name__}.step is not implemented")

    # ------------------------------------------------------------------ state dict
    def state_dict(self):
        """``{"state": {index: {...}}, "param_groups": [{..., "params": [index, ...]}]}`` as PyTorch's."""
        mapping, start = {}, 0

        def pack(group):
            nonlocal start
            packed = {k: v for k, v in group.items() if k != "params"}
            mapping.update((id(p), i) for i, p in enumerate(group["params"], start) if id(p) not in mapping)
            packed["params"] = [mapping[id(p)] for p in group["params"]]
            start += len(packed["params"])
            return packed

        groups = [pack(g) for g in self.param_groups]
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p in self.state:
                    state[mapping[id(p)]] = self.state[p]
        return {"state": state, "param_groups": groups}

    def _cast_state(self, param, value, key):
        """Move loaded state onto the parameter's device; float state takes its dtype (not ``step``)."""
        if isinstance(value, Tensor):
            if key == "step":
                return value
            if value.is_floating_point():
                return value.to(param.device, param.dtype)
            return value.to(param.device)
        if isinstance(value, dict):
            return {k: self._cast_state(param, v, k) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self._cast_state(param, v, key) for v in value)
        return value

    def load_state_dict(self, state_dict: dict):
        """Load a state dict from ``state_dict()`` (or ``vt.load``); the groups must match in size."""
        if "param_groups" not in state_dict or "state" not in state_dict:
            raise ValueError(f"optimizer state_dict must have 'state' and 'param_groups' keys, got "
                             f"{sorted(state_dict)}")
        state_dict = dict(state_dict)
        groups = self.param_groups
        saved_groups = deepcopy(list(state_dict["param_groups"]))
        if len(groups) != len(saved_groups):
            raise ValueError(f"loaded state dict has {len(saved_groups)} parameter groups, but the optimizer has "
                             f"{len(groups)}")
        for i, (g, sg) in enumerate(zip(groups, saved_groups)):
            if len(g["params"]) != len(sg["params"]):
                raise ValueError(f"loaded state dict's parameter group {i} holds {len(sg['params'])} parameters, "
                                 f"but the optimizer's group holds {len(g['params'])}")
        id_map = dict(zip(chain.from_iterable(sg["params"] for sg in saved_groups),
                          chain.from_iterable(g["params"] for g in groups)))
        state = defaultdict(dict)
        for k, v in state_dict["state"].items():
            key = int(k) if isinstance(k, str) and k.lstrip("-").isdigit() else k
            if key in id_map:
                p = id_map[key]
                state[p] = self._cast_state(p, v, None)
            else:
                state[key] = v
        new_groups = []
        for g, sg in zip(groups, saved_groups):
            sg = dict(sg)
            sg["params"] = g["params"]
            if "param_names" in g and "param_names" not in sg:
                sg["param_names"] = g["param_names"]
            if isinstance(sg.get("betas"), list):  # a state dict from JSON may hold lists for tuples
                sg["betas"] = tuple(sg["betas"])
            for k, v in self.defaults.items():  # state dicts from older versions may lack newer options
                sg.setdefault(k, v)
            new_groups.append(sg)
        self.state = state
        self.param_groups = new_groups
