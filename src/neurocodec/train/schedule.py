"""Learning-rate schedules.

- ``"step"`` (the default): the base rate, dropped 10x at ``lr_drop_at`` of the run (as
  CompressAI's examples do on a plateau, at a fixed point here so runs are reproducible).
- ``"cosine"``: half a cosine from the base rate down to 0 over the steps after the warmup.

Both start with a linear warmup over ``warmup`` steps when it is non-zero.
"""

from __future__ import annotations

import math

from neurocodec.errors import ConfigError

__all__ = ["SCHEDULES", "check_schedule", "cosine_lr"]

SCHEDULES = ("step", "cosine")


def check_schedule(name: str, warmup: int, steps: int) -> None:
    if name not in SCHEDULES:
        raise ConfigError(f"the learning-rate schedule must be one of {', '.join(SCHEDULES)}, not {name!r}")
    if not 0 <= warmup < max(steps, 1):
        raise ConfigError(f"the warmup ({warmup} steps) must be shorter than the run ({steps} steps)")


def check_periods(**periods: int) -> None:
    """Every period (validate, log, checkpoint every K steps) is at least one step."""
    for name, k in periods.items():
        if k < 1:
            raise ConfigError(f"{name} (--{name.replace('_', '-')}) must be at least 1 step, not {k}")


def cosine_lr(step: int, base: float, steps: int, warmup: int = 0) -> float:
    """The rate of step ``step`` (0-based) of a ``steps``-step cosine schedule with ``warmup``."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(steps - warmup, 1)
    return base * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
