"""Probes over the clip features of one video window: DIViTA, linear, MLP, simple average, GRU.

Every probe maps a window of clip features `x` (batch, clips, features) and a validity mask
(batch, clips; True for real clips, False for zero padding) to label logits (batch, labels).
As in the reference (DIViTA `model/divita.py`), every probe starts with a BatchNorm1d over the
feature channels (statistics over all clips of the batch), then a clip aggregation module, then a
linear classifier. With `mask=None` every clip counts, padding included, which is exactly what
the reference does with its zero-padded evaluation windows.

`build_probe(name, feature_dim, n_labels)` is the one entry point; `PROBES` lists the names.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

# DIViTA's clip aggregation ("tsfm" in the reference): width, heads, feed-forward factor, dropout.
DIVITA_HIDDEN = 128
DIVITA_HEADS = 4
DIVITA_FF_MULT = 6
DIVITA_DROPOUT = 0.25
# The reference's GRU aggregation ("gru"): one layer of 115 units.
GRU_HIDDEN = 115
# The MLP probe's hidden width: ~400k parameters on 768-d features, DIViTA's size (~365k).
MLP_HIDDEN = 512
MLP_DROPOUT = 0.25


def masked_batch_norm(bn: nn.BatchNorm1d, x: torch.Tensor, mask: torch.Tensor | None):
    """BatchNorm1d over the feature channels of (B, S, F) clips, statistics from real clips only.

    The reference applies BatchNorm1d to (B, F, S), i.e. statistics over every clip of the batch;
    normalizing the flattened (B*S, F) rows is the same computation. Padding rows are left at 0
    and do not enter the statistics.
    """
    b, s, f = x.shape
    if mask is None:
        return _batch_norm_rows(bn, x.reshape(b * s, f)).reshape(b, s, f)
    out = torch.zeros_like(x)
    out[mask] = _batch_norm_rows(bn, x[mask])
    return out


def _batch_norm_rows(bn: nn.BatchNorm1d, rows: torch.Tensor) -> torch.Tensor:
    if bn.training and rows.shape[0] < 2:
        # Training statistics of a single clip are undefined; use the running ones for it.
        return F.batch_norm(
            rows, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps
        )
    return bn(rows)


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over clips (dim 1) of (B, S, H), counting only real clips when a mask is given."""
    if mask is None:
        return x.mean(dim=1)
    weights = mask.to(x.dtype).unsqueeze(-1)
    return (x * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


class MultiHeadAttention(nn.Module):
    """Multi-head self-attention with bias-free Q/K/V/output projections (the reference's)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.W_q = nn.Linear(width, width, bias=False)
        self.W_k = nn.Linear(width, width, bias=False)
        self.W_v = nn.Linear(width, width, bias=False)
        self.W_o = nn.Linear(width, width, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, s, w = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:  # (B, S, W) -> (B, heads, S, W/heads)
            return t.view(b, s, self.heads, w // self.heads).transpose(1, 2)

        # Padding is masked as keys only: padded queries produce outputs that the masked mean
        # over clips ignores. Scale 1/sqrt(W/heads) and no attention dropout, as the reference.
        attn_mask = None if mask is None else mask[:, None, None, :]
        out = F.scaled_dot_product_attention(
            split(self.W_q(x)), split(self.W_k(x)), split(self.W_v(x)), attn_mask=attn_mask
        )
        return self.W_o(out.transpose(1, 2).reshape(b, s, w))


class TransformerBlock(nn.Module):
    """The reference's post-norm block: x = drop(LN(x + attn(x))); x = drop(LN(x + ff(x)))."""

    def __init__(self, width: int, heads: int, ff_mult: int, dropout: float):
        super().__init__()
        self.attention = MultiHeadAttention(width, heads)
        self.norm1 = nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)
        self.ff = nn.Sequential(
            nn.Linear(width, ff_mult * width), nn.ReLU(), nn.Linear(ff_mult * width, width)
        )
        self.norm2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.dropout(self.norm1(self.attention(x, mask) + x))
        return self.dropout(self.norm2(self.ff(x) + x))


class Probe(nn.Module):
    """BatchNorm over features, a clip aggregation step (subclass), a linear classifier."""

    def __init__(self, feature_dim: int, n_labels: int, out_features: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(feature_dim)
        self.cls = nn.Linear(out_features, n_labels)

    def aggregate(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, L) of windows x (B, S, F); mask (B, S) marks real clips (None: all)."""
        return self.cls(self.aggregate(masked_batch_norm(self.bn, x, mask), mask))


class DIViTA(Probe):
    """The reference DIViTA head: BN, Linear to 128, one transformer block, mean, Linear."""

    def __init__(self, feature_dim: int, n_labels: int):
        super().__init__(feature_dim, n_labels, DIVITA_HIDDEN)
        self.embed = nn.Linear(feature_dim, DIVITA_HIDDEN)
        self.block = TransformerBlock(DIVITA_HIDDEN, DIVITA_HEADS, DIVITA_FF_MULT, DIVITA_DROPOUT)

    def aggregate(self, x, mask):
        return masked_mean(self.block(self.embed(x), mask), mask)


class LinearProbe(Probe):
    """Mean of the (batch-normalized) clip features, then one linear layer."""

    def __init__(self, feature_dim: int, n_labels: int):
        super().__init__(feature_dim, n_labels, feature_dim)

    def aggregate(self, x, mask):
        return masked_mean(x, mask)


class SimpleAverage(Probe):
    """The reference's "savg" aggregation: mean over clips, ReLU, linear classifier."""

    def __init__(self, feature_dim: int, n_labels: int):
        super().__init__(feature_dim, n_labels, feature_dim)

    def aggregate(self, x, mask):
        return F.relu(masked_mean(x, mask))


class MLPProbe(Probe):
    """Mean of clip features, one hidden layer (ReLU, dropout), linear classifier."""

    def __init__(self, feature_dim: int, n_labels: int):
        super().__init__(feature_dim, n_labels, MLP_HIDDEN)
        self.hidden = nn.Linear(feature_dim, MLP_HIDDEN)
        self.dropout = nn.Dropout(MLP_DROPOUT)

    def aggregate(self, x, mask):
        return self.dropout(F.relu(self.hidden(masked_mean(x, mask))))


class GRUProbe(Probe):
    """The reference's "gru" aggregation: GRU(115) over clips, ReLU on every step, mean."""

    def __init__(self, feature_dim: int, n_labels: int):
        super().__init__(feature_dim, n_labels, GRU_HIDDEN)
        self.gru = nn.GRU(feature_dim, GRU_HIDDEN, num_layers=1, batch_first=True)

    def aggregate(self, x, mask):
        if mask is None:
            out, _ = self.gru(x)
        else:
            # Real clips are a prefix of each window: pack so padding never enters the state.
            lengths = mask.sum(dim=1).clamp_min(1).cpu()
            packed = nn.utils.rnn.pack_padded_sequence(
                x, lengths, batch_first=True, enforce_sorted=False
            )
            out, _ = self.gru(packed)
            out, _ = nn.utils.rnn.pad_packed_sequence(
                out, batch_first=True, total_length=x.shape[1]
            )
        return masked_mean(F.relu(out), mask)


PROBES: dict[str, Callable[[int, int], Probe]] = {
    "divita": DIViTA,
    "linear": LinearProbe,
    "mlp": MLPProbe,
    "savg": SimpleAverage,
    "gru": GRUProbe,
}


def build_probe(name: str, feature_dim: int, n_labels: int) -> Probe:
    """A freshly initialized probe by name (see `PROBES`)."""
    if name not in PROBES:
        raise ValueError(f"unknown probe {name!r}; choose one of {', '.join(PROBES)}")
    return PROBES[name](feature_dim, n_labels)
