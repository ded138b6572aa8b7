"""The pre-LN Transformer block shared by the ViT, the text Transformer and the MAE decoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import MLP, StochasticDepth

from ptft.errors import ConfigError


class TransformerBlock(nn.Module):
    """Pre-LN block: x + drop_path(attn(LN(x))), then x + drop_path(MLP(LN(x))).

    Attention runs through ``F.scaled_dot_product_attention`` (flash / memory-efficient kernels).
    ``bias=False`` drops the biases of every Linear and LayerNorm in the block (nanoGPT's ``bias=False``).
    ``proj`` and ``mlp_out`` are the two residual projections (the layers GPT-2 scales at init).
    """

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0, drop_path: float = 0.0,
                 attention_dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        self.attention_dropout = attention_dropout
        if width % heads:
            raise ConfigError(f"width {width} must be divisible by heads {heads}")
        self.heads = heads
        self.norm1 = nn.LayerNorm(width, eps=1e-6, bias=bias)
        self.qkv = nn.Linear(width, 3 * width, bias=bias)
        self.proj = nn.Linear(width, width, bias=bias)
        self.norm2 = nn.LayerNorm(width, eps=1e-6, bias=bias)
        self.mlp = MLP(width, [int(width * mlp_ratio), width], activation_layer=nn.GELU, bias=bias, dropout=dropout)
        self.dropout = nn.Dropout(dropout)
        self.drop_path = StochasticDepth(drop_path, mode="row")

    @property
    def mlp_out(self) -> nn.Linear:
        """The MLP's second (output) Linear."""
        return [m for m in self.mlp if isinstance(m, nn.Linear)][-1]

    def attention(self, x: torch.Tensor, mask: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        batch, tokens, width = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        dropout = self.attention_dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=causal and mask is None)
        return self.dropout(self.proj(out.transpose(1, 2).reshape(batch, tokens, width)))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        """``mask``: boolean ``(B, 1, T, T)``, True where a query may attend to a key (it then
        includes any causal constraint); ``causal`` without a mask uses the causal kernels."""
        x = x + self.drop_path(self.attention(self.norm1(x), mask, causal))
        return x + self.drop_path(self.mlp(self.norm2(x)))
