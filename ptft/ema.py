"""Exponential moving averages of networks: the GAN's EMA generator, and the targets (teachers) of
BYOL and DINO. One update rule, :func:`ema_update_`, serves all of them."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

Modules = nn.Module | Sequence[nn.Module]


def _tensors(modules: Modules, kind: str) -> list[torch.Tensor]:
    modules = [modules] if isinstance(modules, nn.Module) else list(modules)
    return [t for m in modules for t in (m.parameters() if kind == "parameters" else m.buffers())]


@torch.no_grad()
def ema_update_(target: Modules, online: Modules, momentum: float | torch.Tensor, average_buffers: bool = False) -> None:
    """In place, for every parameter: ``target = momentum * target + (1 - momentum) * online``.
    Buffers (BatchNorm statistics) are copied from ``online``, or averaged like the parameters
    with ``average_buffers``; integer buffers (``num_batches_tracked``) are always copied.
    ``momentum`` (a float, or a 0-d tensor on the device: no host sync) 0 copies ``online``; 1
    leaves ``target`` as it is. ``target`` and ``online`` are modules of the same structure, or
    sequences of such modules taken pairwise."""
    if not isinstance(momentum, torch.Tensor) and not 0 <= momentum <= 1:
        raise ValueError(f"EMA momentum must be in [0, 1], got {momentum}")
    pairs = [(_tensors(target, kind), _tensors(online, kind)) for kind in ("parameters", "buffers")]
    for targets, onlines in pairs:
        if len(targets) != len(onlines):
            raise ValueError(f"ema_update_: the target has {len(targets)} tensors, the online network {len(onlines)}")
    (target_params, online_params), (target_buffers, online_buffers) = pairs
    averaged = list(zip(target_params, online_params))
    copied = []
    for t, o in zip(target_buffers, online_buffers):
        (averaged if average_buffers and t.is_floating_point() else copied).append((t, o))
    if averaged and not isinstance(momentum, torch.Tensor):  # one fused update of every tensor
        targets, onlines = [t for t, _ in averaged], [o.to(t.dtype) for t, o in averaged]
        torch._foreach_mul_(targets, momentum)
        torch._foreach_add_(targets, onlines, alpha=1 - momentum)
    elif averaged:
        for t, o in averaged:
            m = momentum.to(t.dtype)
            t.mul_(m).add_(o.to(t.dtype) * (1 - m))
    for t, o in copied:
        t.copy_(o)


def cosine_momentum(step: int, total_steps: float, base: float, final: float = 1.0) -> float:
    """Momentum rising from ``base`` at step 0 to ``final`` at ``total_steps`` along a half cosine
    (BYOL, DINO): ``final - (final - base) * (cos(pi * step / total) + 1) / 2``; ``final`` after."""
    progress = min(1.0, step / total_steps) if total_steps > 0 else 1.0
    return final - (final - base) * (math.cos(math.pi * progress) + 1) / 2


def warmup_momentum(decay: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """Momentum of the update after ``n`` earlier ones (a tensor: no host sync), ramping up as
    ``min(decay, (1 + n) / (10 + n))`` so early averages are not dominated by the random
    initialisation; the first update (n = 0) copies."""

    def momentum(n: torch.Tensor) -> torch.Tensor:
        return torch.where(n == 0, 0.0, torch.clamp((1 + n) / (10 + n), max=decay))

    return momentum


class EMACopy(nn.Module):
    """A frozen copy of ``model`` (``self.module``) kept as its exponential moving average by
    :meth:`update_parameters`, which counts its updates in the ``n_averaged`` buffer. Its state
    dict keys are those of ``torch.optim.swa_utils.AveragedModel`` (``module.*``, ``n_averaged``).

    Args:
        model: the online network, copied.
        momentum: a float, or a function of the number of updates made so far (the ``n_averaged``
            tensor) to a momentum, e.g. :func:`warmup_momentum`.
        average_buffers: average floating-point buffers too (else they are copied).
    """

    def __init__(self, model: nn.Module, momentum: float | Callable[[torch.Tensor], torch.Tensor], average_buffers: bool = False) -> None:
        super().__init__()
        self.module = copy.deepcopy(model)
        self.module.requires_grad_(False)
        self.momentum = momentum
        self.average_buffers = average_buffers
        self.register_buffer("n_averaged", torch.tensor(0, dtype=torch.long))

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def update_parameters(self, model: nn.Module, momentum: float | torch.Tensor | None = None) -> None:
        """One EMA step towards ``model``; ``momentum`` replaces the configured one for this call."""
        if momentum is None:
            momentum = self.momentum(self.n_averaged) if callable(self.momentum) else self.momentum
        ema_update_(self.module, model, momentum, self.average_buffers)
        self.n_averaged += 1
