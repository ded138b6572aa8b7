"""The Transformer block shared by the ViT, the text Transformer and the MAE decoder."""

from __future__ import annotations

import functools
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import MLP, StochasticDepth

from ptft.errors import ConfigError


NormPosition = Literal["pre", "post"]
Activation = Literal["gelu", "gelu_tanh"]
ACTIVATIONS = {"gelu": nn.GELU, "gelu_tanh": functools.partial(nn.GELU, approximate="tanh")}


def check_block_options(norm_position: str, activation: str, norm_eps: float) -> None:
    """Raise a ConfigError naming the option unless the block options are valid."""
    if norm_position not in ("pre", "post"):
        raise ConfigError(f"norm_position must be 'pre' or 'post', got {norm_position!r}")
    if activation not in ACTIVATIONS:
        raise ConfigError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    if not norm_eps > 0:
        raise ConfigError(f"norm_eps must be > 0, got {norm_eps}")


class TransformerBlock(nn.Module):
    """Pre-LN block: x + drop_path(attn(LN(x))), then x + drop_path(MLP(LN(x))); or post-LN
    (``norm_position="post"``, BERT's): LN(x + attn(x)), then LN(x + MLP(x)).

    Attention runs through ``F.scaled_dot_product_attention`` (flash / memory-efficient kernels).
    ``bias=False`` drops the biases of every Linear and LayerNorm in the block (nanoGPT's ``bias=False``).
    ``activation`` is the MLP's GELU, exact or its tanh approximation (GPT-2's); ``norm_eps`` the
    LayerNorms' epsilon. ``proj`` and ``mlp_out`` are the two residual projections (the layers GPT-2 scales at init).
    """

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0, drop_path: float = 0.0,
                 attention_dropout: float = 0.0, bias: bool = True, norm_position: NormPosition = "pre",
                 activation: Activation = "gelu", norm_eps: float = 1e-6) -> None:
        super().__init__()
        check_block_options(norm_position, activation, norm_eps)
        self.attention_dropout = attention_dropout
        if width % heads:
            raise ConfigError(f"width {width} must be divisible by heads {heads}")
        self.heads = heads
        self.post_norm = norm_position == "post"
        self.norm1 = nn.LayerNorm(width, eps=norm_eps, bias=bias)
        self.qkv = nn.Linear(width, 3 * width, bias=bias)
        self.proj = nn.Linear(width, width, bias=bias)
        self.norm2 = nn.LayerNorm(width, eps=norm_eps, bias=bias)
        self.mlp = MLP(width, [int(width * mlp_ratio), width], activation_layer=ACTIVATIONS[activation], bias=bias, dropout=dropout)
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
        if self.post_norm:
            x = self.norm1(x + self.drop_path(self.attention(x, mask, causal)))
            return self.norm2(x + self.drop_path(self.mlp(x)))
        x = x + self.drop_path(self.attention(self.norm1(x), mask, causal))
        return x + self.drop_path(self.mlp(self.norm2(x)))
