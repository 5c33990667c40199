"""Probes with parameters stacked on a head axis, written out as batched matrix products.

`probe.sweep` trains many copies of one probe (a grid of learning rates and weight decays) on
the same batches. These functions compute what `probe.models` computes for one probe, for every
head at once: a parameter `name` of the probe is `params[name]` with a leading head axis, and
the result is (heads, batch, labels) logits. The input is `xhat`, the batch-normalized features
*before* the batch norm's scale and shift (the statistics are the batch's, the same for every
head; see `probe.sweep`), with padding rows at 0 when `mask` is given.

Dropout draws one mask per call, shaped as a solo forward's, from the global RNG by the same
kernel (`F.dropout` on ones), and applies it to every head: the draws equal a solo run's.

Linear, MLP and simple-average probes take `pooled`, the (batch, features) mean of `xhat` over
real clips, since their aggregation starts with that mean and the per-channel scale and shift
commute with it. DIViTA folds the batch norm's scale and shift into its first linear layer (one
matrix product of the shared features against every head's folded weights): padding rows then
differ from a solo forward's, but with a mask nothing reads them (attention masks them as keys,
every other step is per row, the mean skips them).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from probe.models import DIVITA_DROPOUT, DIVITA_HEADS, DIVITA_HIDDEN, MLP_DROPOUT, masked_mean

Params = dict[str, torch.Tensor]


def dropout_noise(shape, p: float, training: bool, like: torch.Tensor) -> torch.Tensor | None:
    """The dropout multiplier (0 or 1/(1-p)) a solo `F.dropout` of a `shape` tensor would
    draw now, or None outside training."""
    if not training or p == 0:
        return None
    return F.dropout(torch.ones(shape, dtype=like.dtype, device=like.device), p, True)


def _affine(pooled: torch.Tensor, params: Params) -> torch.Tensor:
    """(heads, batch, features): each head's batch-norm scale and shift of shared rows."""
    return torch.addcmul(params["bn.bias"][:, None], pooled[None], params["bn.weight"][:, None])


def _linear(x: torch.Tensor, params: Params, name: str) -> torch.Tensor:
    """x (heads, rows, in) through each head's nn.Linear `name`: (heads, rows, out)."""
    return torch.baddbmm(
        params[f"{name}.bias"][:, None], x, params[f"{name}.weight"].transpose(1, 2)
    )


def linear_heads(pooled, params: Params, training: bool) -> torch.Tensor:
    """`LinearProbe` heads on pooled features (batch, features)."""
    return _linear(_affine(pooled, params), params, "cls")


def savg_heads(pooled, params: Params, training: bool) -> torch.Tensor:
    """`SimpleAverage` heads on pooled features."""
    return _linear(F.relu(_affine(pooled, params)), params, "cls")


def mlp_heads(pooled, params: Params, training: bool) -> torch.Tensor:
    """`MLPProbe` heads on pooled features."""
    hidden = F.relu(_linear(_affine(pooled, params), params, "hidden"))
    noise = dropout_noise(hidden.shape[1:], MLP_DROPOUT, training, hidden)
    return _linear(hidden if noise is None else hidden * noise, params, "cls")


def _layer_norm(x: torch.Tensor, params: Params, name: str) -> torch.Tensor:
    shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (x.shape[-1],)
    weight = params[f"{name}.weight"].view(shape)
    bias = params[f"{name}.bias"].view(shape)
    return torch.addcmul(bias, F.layer_norm(x, x.shape[-1:]), weight)


def divita_heads(xhat, mask, params: Params, training: bool) -> torch.Tensor:
    """`DIViTA` heads on batch-normalized windows xhat (batch, clips, features)."""
    heads = params["bn.weight"].shape[0]
    b, s, f = xhat.shape
    width = DIVITA_HIDDEN
    # Fold the batch norm's scale and shift into the embedding: one product for all heads.
    weight = params["embed.weight"] * params["bn.weight"][:, None, :]
    bias = params["embed.bias"] + torch.bmm(
        params["embed.weight"], params["bn.bias"][:, :, None]
    ).squeeze(-1)
    x = (xhat.reshape(b * s, f) @ weight.reshape(heads * width, f).T).view(b * s, heads, width)
    x = x.transpose(0, 1) + bias[:, None]  # (heads, b*s, width)
    qkv = torch.cat(
        [params[f"block.attention.W_{n}.weight"] for n in ("q", "k", "v")], dim=1
    ).transpose(1, 2)
    q, k, v = torch.bmm(x, qkv).split(width, dim=-1)

    def split(t):  # (heads, b*s, width) -> (heads*b, attention heads, s, width/attention heads)
        return t.reshape(heads * b, s, DIVITA_HEADS, width // DIVITA_HEADS).transpose(1, 2)

    attn_mask = None if mask is None else mask.repeat(heads, 1)[:, None, None, :]
    out = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=attn_mask)
    out = out.transpose(1, 2).reshape(heads, b * s, width)
    out = torch.bmm(out, params["block.attention.W_o.weight"].transpose(1, 2))
    x = _layer_norm(out + x, params, "block.norm1")
    noise = dropout_noise((b, s, width), DIVITA_DROPOUT, training, x)
    if noise is not None:
        x = x * noise.view(1, b * s, width)
    # ReLU in place: one allocation fewer of the step's largest tensor, the (heads, rows,
    # 6 x width) feed-forward activation (baddbmm's backward does not read its output; relu's
    # backward reads its result).
    ff = _linear(F.relu_(_linear(x, params, "block.ff.0")), params, "block.ff.2")
    x = _layer_norm(ff + x, params, "block.norm2")
    noise = dropout_noise((b, s, width), DIVITA_DROPOUT, training, x)
    if noise is not None:
        x = x * noise.view(1, b * s, width)
    pooled = masked_mean(
        x.reshape(heads * b, s, width), None if mask is None else mask.repeat(heads, 1)
    )
    return _linear(pooled.view(heads, b, width), params, "cls")


def gru_heads(xhat, mask, params: Params, training: bool) -> torch.Tensor:
    """`GRUProbe` heads on batch-normalized windows xhat (batch, clips, features).

    nn.GRU's equations step by step (gates r, z, n in its weight order); with a mask a window's
    state stops at its last real clip and its padded steps output 0, as the packed sequence of
    a solo forward does.
    """
    heads = params["bn.weight"].shape[0]
    b, s, f = xhat.shape
    hidden = params["gru.weight_hh_l0"].shape[-1]
    # The batch norm's scale and shift folded into the input projection, as in divita_heads.
    w_ih = params["gru.weight_ih_l0"]
    weight = w_ih * params["bn.weight"][:, None, :]
    bias = params["gru.bias_ih_l0"] + torch.bmm(w_ih, params["bn.bias"][:, :, None]).squeeze(-1)
    gates_x = (xhat.reshape(b * s, f) @ weight.reshape(-1, f).T).view(b, s, heads, 3 * hidden)
    gates_x = gates_x.permute(2, 1, 0, 3) + bias[:, None, None]  # (heads, clips, batch, 3H)
    w_hh = params["gru.weight_hh_l0"].transpose(1, 2)
    b_hh = params["gru.bias_hh_l0"][:, None]
    state = xhat.new_zeros(heads, b, hidden)
    outputs = []
    for t in range(s):
        r_x, z_x, n_x = gates_x[:, t].chunk(3, dim=-1)
        r_h, z_h, n_h = torch.baddbmm(b_hh, state, w_hh).chunk(3, dim=-1)
        r = torch.sigmoid(r_x + r_h)
        z = torch.sigmoid(z_x + z_h)
        n = torch.tanh(n_x + r * n_h)
        new = (1 - z) * n + z * state
        if mask is None:
            state = new
            outputs.append(new)
        else:
            real = mask[:, t].view(1, b, 1)
            state = torch.where(real, new, state)
            outputs.append(new * real)
    out = F.relu(torch.stack(outputs, dim=2))  # (heads, batch, clips, H)
    repeated = None if mask is None else mask.repeat(heads, 1)
    pooled = masked_mean(out.reshape(heads * b, s, hidden), repeated)
    return _linear(pooled.view(heads, b, hidden), params, "cls")


# Probes written out here; the others run under torch.vmap (see probe.sweep).
POOLED = {"linear": linear_heads, "savg": savg_heads, "mlp": mlp_heads}
WINDOWED = {"divita": divita_heads, "gru": gru_heads}
