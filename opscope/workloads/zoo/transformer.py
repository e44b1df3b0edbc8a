"""Transformer models of the zoo: a BERT-base style encoder and a GPT-2 style decoder block.

Both take already-embedded activations ``(batch, seq_len, hidden)`` as input: the embedding
lookup is a gather, not a kernel whose latency we study.  Attention is written out as two
batched matmuls around a softmax (no fused SDPA), so that the imported operators are the
attention ``logit`` (Q·Kᵀ) and ``attend`` (P·V) products the analytical model knows.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class SelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, causal: bool, seq_len: int) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden={hidden} is not a multiple of heads={heads}")
        self.heads, self.head_dim = heads, hidden // heads
        self.q = nn.Linear(hidden, hidden)
        self.k = nn.Linear(hidden, hidden)
        self.v = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, hidden)
        self.causal = causal
        if causal:
            self.register_buffer("mask", torch.tril(torch.ones(seq_len, seq_len, dtype=torch.bool)))

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        return x.reshape(b, s, self.heads, self.head_dim).permute(0, 2, 1, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, h = x.shape
        q, k, v = self._split(self.q(x)), self._split(self.k(x)), self._split(self.v(x))
        logits = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        if self.causal:
            logits = logits.masked_fill(~self.mask[:s, :s], float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        ctx = torch.matmul(probs, v).permute(0, 2, 1, 3).reshape(b, s, h)
        return self.out(ctx)


class _FeedForward(nn.Module):
    def __init__(self, hidden: int, ff: int) -> None:
        super().__init__()
        self.up = nn.Linear(hidden, ff)
        self.down = nn.Linear(ff, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(nn.functional.gelu(self.up(x)))


class EncoderLayer(nn.Module):
    """Post-LN encoder layer as in BERT."""

    def __init__(self, hidden: int, heads: int, ff: int, seq_len: int) -> None:
        super().__init__()
        self.attn = SelfAttention(hidden, heads, causal=False, seq_len=seq_len)
        self.ln1 = nn.LayerNorm(hidden)
        self.ff = _FeedForward(hidden, ff)
        self.ln2 = nn.LayerNorm(hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ln1(x + self.attn(x))
        return self.ln2(x + self.ff(x))


class DecoderBlock(nn.Module):
    """Pre-LN decoder block with causal self-attention, as in GPT-2."""

    def __init__(self, hidden: int, heads: int, ff: int, seq_len: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(hidden)
        self.attn = SelfAttention(hidden, heads, causal=True, seq_len=seq_len)
        self.ln2 = nn.LayerNorm(hidden)
        self.ff = _FeedForward(hidden, ff)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.ff(self.ln2(x))


def bert(seq_len: int = 128, heads: int = 12, hidden: int = 768, ff: int = 3072, layers: int = 12) -> nn.Module:
    return nn.Sequential(*[EncoderLayer(hidden, heads, ff, seq_len) for _ in range(layers)])


def gpt2(seq_len: int = 128, heads: int = 12, hidden: int = 768, ff: int = 3072, layers: int = 1) -> nn.Module:
    return nn.Sequential(*[DecoderBlock(hidden, heads, ff, seq_len) for _ in range(layers)])
