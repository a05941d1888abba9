"""nn.Module API: registration, traversal, state_dict/load_state_dict, modes, hooks, moves, repr."""
import copy

import numpy as np
import pytest
import torch

import vibetensor as vt
from vibetensor import nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.norm = nn.LayerNorm(4)
        self.register_buffer("steps", vt.zeros(1, dtype=vt.int64))
        self.register_buffer("cache", vt.ones(2), persistent=False)

    def forward(self, x):
        return self.norm(self.fc(x))


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(5, 3)
        self.head = nn.Linear(3, 5, bias=False)
        self.head.weight = self.emb.weight  # weight tying: one Parameter under two names


def _torch_block():
    class TBlock(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(3, 4)
            self.norm = torch.nn.LayerNorm(4)
            self.register_buffer("steps", torch.zeros(1, dtype=torch.int64))
            self.register_buffer("cache", torch.ones(2), persistent=False)
    return TBlock()


def test_parameter_is_tensor_and_shares_memory():
    t = vt.zeros(3)
    p = nn.Parameter(t)
    assert isinstance(p, nn.Parameter) and isinstance(p, vt.Tensor)
    assert p.requires_grad and p.is_leaf
    assert not isinstance(t, nn.Parameter)
    with vt.no_grad():
        p.add_(1.0)
    assert t.tolist() == [1.0, 1.0, 1.0]
    assert "Parameter containing" in repr(p)
    with pytest.raises(TypeError, match="floating-point"):
        nn.Parameter(vt.zeros(2, dtype=vt.int64))
    assert not nn.Parameter(vt.zeros(2, dtype=vt.int64), requires_grad=False).requires_grad
    assert not isinstance(p * 2, nn.Parameter)  # ops return plain tensors, as in PyTorch


def test_named_parameters_buffers_children_modules():
    b = Block()
    assert [n for n, _ in b.named_parameters()] == ["fc.weight", "fc.bias", "norm.weight", "norm.bias"]
    assert [n for n, _ in b.named_parameters(recurse=False)] == []
    assert [n for n, _ in b.named_buffers()] == ["steps", "cache"]
    assert [n for n, _ in b.named_children()] == ["fc", "norm"]
    assert [n for n, _ in b.named_modules()] == ["", "fc", "norm"]
    assert len(list(b.parameters())) == 4 and len(list(b.buffers())) == 2
    assert b.get_submodule("fc") is b.fc and b.get_parameter("fc.bias") is b.fc.bias
    with pytest.raises(AttributeError, match="nope"):
        b.get_submodule("nope")


def test_shared_parameters_are_deduplicated():
    m = Tied()
    names = [n for n, _ in m.named_parameters()]
    assert names == ["emb.weight"]
    assert [n for n, _ in m.named_parameters(remove_duplicate=False)] == ["emb.weight", "head.weight"]
    assert list(m.state_dict()) == ["emb.weight", "head.weight"]  # state_dict keeps both names, like torch


def test_setattr_rules_and_errors():
    m = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="cannot assign 'Tensor' as parameter 'weight'"):
        m.weight = vt.zeros(2, 2)
    m.bias = None
    assert m.bias is None and "bias" in m._parameters
    m.extra = nn.Parameter(vt.zeros(1))
    assert "extra" in dict(m.named_parameters())
    del m.extra
    assert "extra" not in dict(m.named_parameters())

    class Bad(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(vt.zeros(1))

    with pytest.raises(AttributeError, match="before Module.__init__"):
        Bad()
    with pytest.raises(KeyError, match="contain"):
        m.register_buffer("a.b", vt.zeros(1))
    with pytest.raises(TypeError, match="Tensor or None"):
        m.register_buffer("buf", 3)
    with pytest.raises(NotImplementedError, match="missing the required \"forward\""):
        nn.Module()(1)


def test_state_dict_keys_persistent_and_keep_vars():
    b = Block()
    sd = b.state_dict()
    # own parameters and buffers first, then children's (PyTorch's order)
    assert list(sd) == ["steps", "fc.weight", "fc.bias", "norm.weight", "norm.bias"]
    assert list(sd) == list(_torch_block().state_dict())
    assert not isinstance(sd["fc.weight"], nn.Parameter) and not sd["fc.weight"].requires_grad
    assert b.state_dict(keep_vars=True)["fc.weight"] is b.fc.weight
    assert list(b.state_dict(prefix="blk."))[:2] == ["blk.steps", "blk.fc.weight"]


def test_load_state_dict_strict_errors_name_the_keys():
    src, dst = Block(), Block()
    res = dst.load_state_dict(src.state_dict())
    assert res.missing_keys == [] and res.unexpected_keys == []
    np.testing.assert_array_equal(dst.fc.weight.detach().numpy(), src.fc.weight.detach().numpy())

    sd = src.state_dict()
    del sd["norm.bias"]
    sd["extra.weight"] = vt.zeros(2)
    with pytest.raises(RuntimeError) as ei:
        dst.load_state_dict(sd)
    msg = str(ei.value)
    assert "Missing key(s) in state_dict: \"norm.bias\"" in msg
    assert "Unexpected key(s) in state_dict: \"extra.weight\"" in msg
    assert "Block" in msg

    res = dst.load_state_dict(sd, strict=False)
    assert res.missing_keys == ["norm.bias"] and res.unexpected_keys == ["extra.weight"]

    sd = src.state_dict()
    sd["fc.weight"] = vt.zeros(5, 3)
    with pytest.raises(RuntimeError, match=r"size mismatch for fc.weight: copying a param with shape \(5, 3\)"):
        dst.load_state_dict(sd)


def test_load_state_dict_keeps_parameter_identity_and_casts():
    m = nn.Linear(3, 2)
    w = m.weight
    m.load_state_dict({"weight": vt.ones(2, 3, dtype=vt.float64), "bias": vt.zeros(2, dtype=vt.float64)})
    assert m.weight is w and m.weight.dtype == vt.float32
    assert m.weight.detach().numpy().tolist() == [[1.0] * 3] * 2
    m.load_state_dict({"weight": vt.full((2, 3), 2.0), "bias": vt.zeros(2)}, assign=True)
    assert m.weight is not w and isinstance(m.weight, nn.Parameter) and m.weight.requires_grad


def test_train_eval_propagates():
    m = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5), nn.Sequential(nn.Dropout(0.2)))
    assert all(x.training for x in m.modules())
    assert m.eval() is m
    assert not any(x.training for x in m.modules())
    x = vt.randn(4, 2)
    np.testing.assert_array_equal(m[1](x).numpy(), x.numpy())
    m.train()
    assert all(x.training for x in m.modules())
    with pytest.raises(ValueError, match="boolean"):
        m.train("yes")


def test_forward_hooks():
    m = nn.Linear(2, 2)
    calls = []
    h1 = m.register_forward_pre_hook(lambda mod, args: (args[0] * 0,))
    h2 = m.register_forward_hook(lambda mod, args, out: calls.append("post") or out + 1)
    m.register_forward_hook(lambda mod, args, out: calls.append("first"), prepend=True)
    out = m(vt.randn(3, 2))
    expected = m.bias.detach().numpy() + 1
    np.testing.assert_allclose(out.detach().numpy(), np.broadcast_to(expected, (3, 2)), rtol=1e-6)
    assert calls == ["first", "post"]
    h1.remove()
    h2.remove()
    x = vt.randn(3, 2)
    np.testing.assert_allclose(m(x).detach().numpy(), F_linear_np(x, m), rtol=1e-5)

    seen = {}

    def kw_pre(mod, args, kwargs):
        seen["kw"] = dict(kwargs)
        return args, {}

    m2 = nn.Identity()
    m2.forward = lambda x, scale=1: x * scale
    m2.register_forward_pre_hook(kw_pre, with_kwargs=True)
    assert m2(vt.ones(1), scale=5).item() == 1.0 and seen["kw"] == {"scale": 5}


def F_linear_np(x, m):
    return x.numpy() @ m.weight.detach().numpy().T + m.bias.detach().numpy()


def test_to_dtype_keeps_parameter_identity_and_skips_int_buffers():
    b = Block()
    w = b.fc.weight
    opt = vt.optim.SGD(b.parameters(), lr=0.1)
    b.fc.weight.grad = vt.ones(4, 3)
    b.to(vt.float64)
    assert b.fc.weight is w and w.dtype == vt.float64 and w.grad.dtype == vt.float64
    assert b.steps.dtype == vt.int64 and b.cache.dtype == vt.float64
    assert opt.param_groups[0]["params"][0] is w
    b.half()
    assert w.dtype == vt.float16
    b.bfloat16()
    assert w.dtype == vt.bfloat16
    b.float()
    assert w.dtype == vt.float32
    b.to("cpu")
    assert w.device == vt.device("cpu")
    with pytest.raises(TypeError, match="floating point"):
        b.to(vt.int32)


def test_zero_grad_apply_requires_grad_():
    m = nn.Linear(2, 3)
    m(vt.randn(4, 2)).sum().backward()
    m.zero_grad(set_to_none=False)
    assert m.weight.grad is not None and float(m.weight.grad.abs().sum()) == 0.0
    m.zero_grad()
    assert m.weight.grad is None
    seen = []
    nn.Sequential(m, nn.ReLU()).apply(lambda mod: seen.append(type(mod).__name__))
    assert seen == ["Linear", "ReLU", "Sequential"]
    m.requires_grad_(False)
    assert not any(p.requires_grad for p in m.parameters())


def test_containers():
    s = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    assert len(s) == 3 and isinstance(s[-1], nn.Linear)
    sub = s[1:]
    assert isinstance(sub, nn.Sequential) and len(sub) == 2 and sub[1] is s[2]
    s.append(nn.Tanh())
    assert len(s) == 4 and list(dict(s.named_children())) == ["0", "1", "2", "3"]
    del s[1]
    assert list(dict(s.named_children())) == ["0", "1", "2"] and isinstance(s[1], nn.Linear)
    assert s(vt.randn(5, 2)).shape == (5, 1)
    with pytest.raises(IndexError, match="out of range"):
        s[7]

    ml = nn.ModuleList([nn.Linear(1, 1) for _ in range(3)])
    ml.append(nn.ReLU())
    assert len(ml) == 4 and len(list(ml.parameters())) == 6
    assert isinstance(ml[1:3], nn.ModuleList) and len(ml[1:3]) == 2
    ml.insert(0, nn.Tanh())
    assert isinstance(ml[0], nn.Tanh) and len(ml) == 5

    md = nn.ModuleDict({"a": nn.Linear(1, 2), "b": nn.ReLU()})
    md["c"] = nn.Tanh()
    assert list(md.keys()) == ["a", "b", "c"] and "a" in md and len(md) == 3
    assert [n for n, _ in md.named_parameters()] == ["a.weight", "a.bias"]


def test_repr_matches_torch():
    vm = nn.Sequential(nn.Linear(4, 8), nn.GELU(approximate="tanh"), nn.LayerNorm(8), nn.Dropout(0.1),
                       nn.Embedding(10, 4, padding_idx=0), nn.Conv2d(3, 8, 3, padding=1),
                       nn.MaxPool2d(2), nn.ReLU(), nn.ModuleList([nn.SiLU()]))
    tm = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.GELU(approximate="tanh"), torch.nn.LayerNorm(8),
                             torch.nn.Dropout(0.1), torch.nn.Embedding(10, 4, padding_idx=0),
                             torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.MaxPool2d(2), torch.nn.ReLU(),
                             torch.nn.ModuleList([torch.nn.SiLU()]))
    assert repr(vm) == repr(tm)


def test_deepcopy_module():
    m = nn.Linear(3, 2)
    c = copy.deepcopy(m)
    assert c.weight is not m.weight and isinstance(c.weight, nn.Parameter)
    np.testing.assert_array_equal(c.weight.detach().numpy(), m.weight.detach().numpy())
    with vt.no_grad():
        c.weight.fill_(0.0)
    assert float(m.weight.abs().sum()) > 0


def test_parameter_list_and_dict():
    pl = nn.ParameterList([vt.zeros(3), nn.Parameter(vt.ones(2, 2))])
    assert len(pl) == 2 and all(isinstance(p, nn.Parameter) for p in pl)
    pl.append(vt.ones(1))
    assert [n for n, _ in pl.named_parameters()] == ["0", "1", "2"] and tuple(pl[-1].shape) == (1,)
    pd = nn.ParameterDict({"a": vt.zeros(2)})
    pd["b"] = nn.Parameter(vt.ones(1))
    assert list(pd.keys()) == ["a", "b"] and "a" in pd and isinstance(pd["a"], nn.Parameter)

    class Holder(nn.Module):
        def __init__(self):
            super().__init__()
            self.ps = nn.ParameterList([vt.zeros(2)])
            self.pd = nn.ParameterDict({"w": vt.ones(3)})
    assert list(Holder().state_dict()) == ["ps.0", "pd.w"]


def test_parameter_of_a_tensor_subclass_is_tagged():
    """Sharded tensors (DTensor subclasses) become Parameters by tagging, keeping their own type."""
    class Sub(vt.Tensor):
        pass
    s = Sub._make(np.zeros(3, np.float32), vt.device("cpu"))
    p = nn.Parameter(s)
    assert p is s and type(p) is Sub and isinstance(p, nn.Parameter) and p.requires_grad
    m = nn.Module()
    m.w = p
    assert list(dict(m.named_parameters())) == ["w"]


def test_state_dict_legacy_positional_form():
    m = nn.Linear(2, 2)
    dest = {}
    out = m.state_dict(dest, "m.")
    assert out is dest and list(dest) == ["m.weight", "m.bias"]
    assert m.state_dict(None, "", True)["weight"] is m.weight


def test_load_state_dict_accepts_torch_and_numpy_values():
    tm = torch.nn.Linear(3, 2).to(torch.bfloat16)
    vm = nn.Linear(3, 2).bfloat16()
    vm.load_state_dict(tm.state_dict())
    np.testing.assert_array_equal(vm.weight.detach().numpy().view(np.int16),
                                  tm.weight.detach().view(torch.int16).numpy())
    vm.load_state_dict({"weight": np.ones((2, 3)), "bias": np.zeros(2)})
    assert vm.weight.dtype == vt.bfloat16 and vm.weight.detach().float().numpy().tolist() == [[1.0] * 3] * 2
    with pytest.raises(RuntimeError, match='expected a Tensor from the checkpoint but received list'):
        vm.load_state_dict({"weight": [[1.0] * 3] * 2, "bias": np.zeros(2)})
