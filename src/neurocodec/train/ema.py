"""An exponential moving average of a model's weights (``--ema DECAY``).

The average is a second copy of the model, in eval mode, updated after every optimizer step:
``ema = decay * ema + (1 - decay) * weights`` for floating-point entries of the state dict,
a plain copy for the others (integer tables, counters). Validation and export use it when a
run has one; the trainer checkpoints it as ``ema.*`` tensors.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from neurocodec.errors import ConfigError

__all__ = ["WeightAverage"]


class WeightAverage:
    def __init__(self, model: nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ConfigError(f"the EMA decay must be in (0, 1), not {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        live, average = model.state_dict(), self.model.state_dict()
        floats = [k for k, v in live.items() if v.is_floating_point()]
        if floats:
            torch._foreach_lerp_([average[k] for k in floats], [live[k] for k in floats], 1 - self.decay)
        for k, v in live.items():
            if not v.is_floating_point():
                average[k].copy_(v)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)
