"""MultiheadAttention (PyTorch's parameter layout, masks and return values).

Deviation: ``is_causal=True`` without an ``attn_mask`` applies a causal mask (PyTorch raises and asks
for the mask as well); with a mask given it is only a hint, as in PyTorch.
"""
from __future__ import annotations

import math

from ...core import factories as _f
from ...core.dispatcher import ops
from ...errors import ShapeError
from .. import functional as F
from .. import init
from ..module import Module
from ..parameter import Parameter
from .linear import Linear

V = ops.vt


class NonDynamicallyQuantizableLinear(Linear):
    pass


def _float_mask(mask, dtype, name):
    """Bool mask (True = not allowed to attend) -> additive float mask; float masks pass through."""
    if mask is None:
        return None
    if mask.dtype.name == "bool":
        return V.masked_fill(_f.zeros(tuple(mask.shape), dtype=dtype, device=mask.device), mask, float("-inf"))
    if not mask.dtype.is_floating_point:
        raise TypeError(f"MultiheadAttention: {name} must be a bool or floating tensor, got {mask.dtype.name}")
    return mask.to(dtype)


class MultiheadAttention(Module):
    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, add_bias_kv=False, add_zero_attn=False,
                 kdim=None, vdim=None, batch_first=False, device=None, dtype=None):
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(f"MultiheadAttention: embed_dim and num_heads must be > 0, got {embed_dim} and "
                             f"{num_heads}")
        if embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim ({embed_dim}) must be divisible by num_heads "
                             f"({num_heads})")
        if add_bias_kv or add_zero_attn:
            raise NotImplementedError("MultiheadAttention: add_bias_kv and add_zero_attn are not supported")
        fk = {"device": device, "dtype": dtype}
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.head_dim = embed_dim // num_heads
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter(_f.empty((3 * embed_dim, embed_dim), **fk))
            self.register_parameter("q_proj_weight", None)
            self.register_parameter("k_proj_weight", None)
            self.register_parameter("v_proj_weight", None)
        else:
            self.q_proj_weight = Parameter(_f.empty((embed_dim, embed_dim), **fk))
            self.k_proj_weight = Parameter(_f.empty((embed_dim, self.kdim), **fk))
            self.v_proj_weight = Parameter(_f.empty((embed_dim, self.vdim), **fk))
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = Parameter(_f.empty((3 * embed_dim,), **fk))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = NonDynamicallyQuantizableLinear(embed_dim, embed_dim, bias=bias, **fk)
        self.bias_k = self.bias_v = None
        self.add_zero_attn = False
        self._reset_parameters()

    def _reset_parameters(self):
        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight)
        else:
            init.xavier_uniform_(self.q_proj_weight)
            init.xavier_uniform_(self.k_proj_weight)
            init.xavier_uniform_(self.v_proj_weight)
        if self.in_proj_bias is not None:
            init.constant_(self.in_proj_bias, 0.0)
            init.constant_(self.out_proj.bias, 0.0)

    def _project(self, query, key, value):
        E = self.embed_dim
        b = self.in_proj_bias
        bq, bk, bv = (None, None, None) if b is None else (b[0:E], b[E:2 * E], b[2 * E:])
        if self._qkv_same_embed_dim:
            w = self.in_proj_weight
            if query is key and key is value:
                return V.chunk(F.linear(query, w, b), 3, -1)
            wq, wk, wv = w[0:E], w[E:2 * E], w[2 * E:]
        else:
            wq, wk, wv = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
        return F.linear(query, wq, bq), F.linear(key, wk, bk), F.linear(value, wv, bv)

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        """Returns ``(attn_output, attn_weights)``; weights are None unless ``need_weights``, averaged over
        heads (N, L, S) when ``average_attn_weights`` else (N, H, L, S)."""
        unbatched = query.dim() == 2
        if query.dim() not in (2, 3):
            raise ShapeError(f"MultiheadAttention: query must be 2-d (unbatched) or 3-d, got shape "
                             f"{tuple(query.shape)}")
        if key.dim() != query.dim() or value.dim() != query.dim():
            raise ShapeError(f"MultiheadAttention: query, key and value must have the same number of dims, got "
                             f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}")
        if unbatched:
            query, key, value = (V.unsqueeze(t, 0) for t in (query, key, value))
            if key_padding_mask is not None:
                key_padding_mask = V.unsqueeze(key_padding_mask, 0)
        elif not self.batch_first:
            query, key, value = (V.transpose(t, 0, 1) for t in (query, key, value))
        N, L, E = query.shape
        S = key.shape[1]
        if E != self.embed_dim:
            raise ShapeError(f"MultiheadAttention: query's last dim is {E}, expected embed_dim {self.embed_dim}")
        H, D = self.num_heads, self.head_dim
        q, k, v = self._project(query, key, value)
        q = V.transpose(V.reshape(q, (N, L, H, D)), 1, 2)
        k = V.transpose(V.reshape(k, (N, S, H, D)), 1, 2)
        v = V.transpose(V.reshape(v, (N, S, H, D)), 1, 2)

        # plain causal attention without weights goes to SDPA's own causal path (no mask tensor)
        sdpa_causal = is_causal and attn_mask is None and key_padding_mask is None and not need_weights
        mask = None if sdpa_causal else self._merge_masks(attn_mask, key_padding_mask, is_causal, N, L, S,
                                                          q.dtype, q.device)
        p = self.dropout if self.training else 0.0
        if need_weights:
            scores = V.matmul(q, V.transpose(k, -2, -1)) * (1.0 / math.sqrt(D))
            if mask is not None:
                scores = scores + mask
            w = F.softmax(scores, -1)
            if p > 0.0:
                w = F.dropout(w, p, True)
            out = V.matmul(w, v)
        else:
            out = F.scaled_dot_product_attention(q, k, v, mask, p, sdpa_causal)
            w = None
        out = V.reshape(V.transpose(out, 1, 2), (N, L, E))
        out = self.out_proj(out)
        if w is not None and average_attn_weights:
            w = V.mean(w, 1)
        if unbatched:
            out = V.squeeze(out, 0)
            w = V.squeeze(w, 0) if w is not None else None
        elif not self.batch_first:
            out = V.transpose(out, 0, 1)
        return out, w

    def _merge_masks(self, attn_mask, key_padding_mask, is_causal, N, L, S, dtype, device):
        mask = None
        if attn_mask is not None:
            am = _float_mask(attn_mask, dtype, "attn_mask")
            if am.dim() == 2:
                if tuple(am.shape) != (L, S):
                    raise ShapeError(f"MultiheadAttention: 2-d attn_mask must be (L, S) = {(L, S)}, got "
                                     f"{tuple(am.shape)}")
                mask = V.reshape(am, (1, 1, L, S))
            elif am.dim() == 3:
                if tuple(am.shape) != (N * self.num_heads, L, S):
                    raise ShapeError(f"MultiheadAttention: 3-d attn_mask must be (N*num_heads, L, S) = "
                                     f"{(N * self.num_heads, L, S)}, got {tuple(am.shape)}")
                mask = V.reshape(am, (N, self.num_heads, L, S))
            else:
                raise ShapeError(f"MultiheadAttention: attn_mask must be 2-d or 3-d, got shape {tuple(am.shape)}")
        elif is_causal:
            causal = V.triu(_f.ones((L, S), dtype="bool", device=device), 1)
            mask = V.reshape(_float_mask(causal, dtype, "causal mask"), (1, 1, L, S))
        if key_padding_mask is not None:
            if tuple(key_padding_mask.shape) != (N, S):
                raise ShapeError(f"MultiheadAttention: key_padding_mask must be (N, S) = {(N, S)}, got "
                                 f"{tuple(key_padding_mask.shape)}")
            kp = V.reshape(_float_mask(key_padding_mask, dtype, "key_padding_mask"), (N, 1, 1, S))
            mask = kp if mask is None else mask + kp
        return mask

    def extra_repr(self):
        return ""
