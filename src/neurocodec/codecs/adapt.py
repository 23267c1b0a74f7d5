"""Encoder-side instance adaptation: stochastic Gumbel annealing (SGA) of one input's latents.

Yang, Bamler & Mandt, "Improving Inference for Neural Image Compression" (NeurIPS 2020): the
encoder's latent ``y = g_a(x)`` and its side latents (a hyperprior's ``z = h_a(y)``: the latent
codec's ``side_latents(y)``) are a good guess, not the best latents for ``x``. :func:`refine`
improves them by gradient descent (Adam) on the rate-distortion loss of this one input,
``lambda * 255^2 * MSE(x_hat, x) + bpp`` (:func:`neurocodec.models.losses.rd_loss`), through the frozen float networks
of the decoder side (synthesis and prior), then hands them back to the codec, which quantizes
and codes them exactly as it codes the encoder's own latents. The file format and the decoder
are unchanged, and decoding costs nothing more.

Rounding has no useful gradient, so during the descent each value to be rounded, ``v`` (an
offset ``y - mean`` from the prior's grid, or ``z``), is replaced by a random relaxed rounding
(:func:`sga_round`): with ``a = floor(v)``, ``b = ceil(v)`` and the logits
``-atanh(v - a) / tau`` and ``-atanh(b - v) / tau``, a Gumbel-softmax sample at temperature
``tau`` weighs ``a`` and ``b``. The nearer integer is the likelier, and as ``tau`` falls the
sample hardens into a rounding, so the loss the descent sees turns into the loss of the coded
file. The temperature schedule is the paper's, ``tau = min(0.5, 0.5 exp(-c (t - t0)))``,
stretched to the number of iterations: the paper runs 2000 iterations with ``c = 1e-3`` and
``t0 = 700``, i.e. ``tau = min(0.5, 0.5 exp(-2 (t / T - 0.35)))``, falling from 0.5 to 0.136.

A model takes part through one method, ``latent_forward(y, side, mode) -> {"x_hat",
"likelihoods"}`` (its training pass from the latents on, ``mode`` a quantization mode of
:meth:`~neurocodec.entropy.models.base.EntropyModel.quantize`, here the relaxed rounding), and
the codec knows its ``lambda`` from the weights' model card. The randomness comes from a
generator seeded with :data:`SEED`, so the same input, weights and effort give the same file.
The refined latents are kept only if their loss with hard rounding (the coded loss, rate from
the likelihoods) is below the encoder's; otherwise the encoder's are coded, so more effort
never makes a file worse by that measure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import partial
from typing import Protocol

import torch
from torch import Tensor

from neurocodec.models.losses import rd_loss

__all__ = ["LR", "SEED", "Adaptable", "refine", "sga_round", "temperature"]

# Adam's learning rate on the latents. The paper's 5e-3 is for 2000 iterations; for 25 to 100
# iterations 2e-2 did best (of 5e-3, 1e-2, 2e-2, 4e-2; shipped hyperprior q1 and q4, two BSDS500
# validation images, R-D loss of the real files; not tuned on Kodak, the evaluation set).
LR = 2e-2
SEED = 0  # the Gumbel noise's seed: a file depends on its input, weights and effort only
TAU_MAX = 0.5  # the temperature at the start (the paper's)
_EPS = 1e-5  # distances are clamped below 1 - _EPS before atanh


class Adaptable(Protocol):
    def latent_forward(self, y: Tensor, side: Mapping[str, Tensor] | None = None, mode=None) -> dict: ...


def temperature(step: int, iterations: int) -> float:
    """The temperature of iteration ``step`` of ``iterations``: the paper's schedule (2000
    iterations, ``min(0.5, 0.5 exp(-1e-3 (t - 700)))``) stretched to ``iterations``."""
    return min(TAU_MAX, TAU_MAX * math.exp(-2.0 * (step / iterations - 0.35)))


def sga_round(v: Tensor, tau: float, generator: torch.Generator) -> Tensor:
    """A stochastic Gumbel-annealed rounding of ``v`` to ``floor(v)`` or ``ceil(v)``: their
    Gumbel-softmax weights at temperature ``tau``, of logits ``-atanh(distance) / tau``.

    With two categories the Gumbel-softmax weight of ``ceil`` is a sigmoid of the logits'
    difference plus logistic noise (the difference of two Gumbel variables), over ``tau``.
    """
    low, high = torch.floor(v), torch.ceil(v)
    down = -torch.atanh((v - low).clamp(max=1 - _EPS)) / tau
    up = -torch.atanh((high - v).clamp(max=1 - _EPS)) / tau
    u = torch.rand(v.shape, generator=generator, device=v.device, dtype=v.dtype).clamp_(_EPS, 1 - _EPS)
    weight = torch.sigmoid((up - down + torch.log(u) - torch.log1p(-u)) / tau)
    return low + weight * (high - low)


def refine(
    model: Adaptable,
    x: Tensor,
    y: Tensor,
    side: Mapping[str, Tensor],
    lmbda: float,
    iterations: int,
    lr: float = LR,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The latents ``(y, side)`` of ``x`` after ``iterations`` Adam steps of SGA on the R-D loss
    (:func:`~neurocodec.models.losses.rd_loss` of ``model.latent_forward``), or the given ones if
    those code ``x`` better (by the hard-rounded loss). ``side`` holds the side latents (the
    latent codec's ``side_latents(y)``; empty for a factorized prior). ``x`` is the input as
    coded, without the codec's padding. Works inside ``torch.inference_mode``; the model's
    parameters are not changed."""
    with torch.inference_mode(False), torch.enable_grad():
        x = x.detach().clone()
        start = y.detach().clone(), {name: t.detach().clone() for name, t in side.items()}
        y = start[0].clone().requires_grad_()
        side = {name: t.clone().requires_grad_() for name, t in start[1].items()}
        optimizer = torch.optim.Adam([y, *side.values()], lr=lr)
        generator = torch.Generator(device=y.device).manual_seed(SEED)
        for step in range(iterations):
            rounding = partial(sga_round, tau=temperature(step, iterations), generator=generator)
            loss, _ = rd_loss(model.latent_forward(y, side, rounding), x, lmbda)
            optimizer.zero_grad(set_to_none=True)
            loss.backward(inputs=[y, *side.values()])
            optimizer.step()
        with torch.no_grad():
            coded = [
                rd_loss(model.latent_forward(*latents, "ste"), x, lmbda)[0] for latents in (start, (y, side))
            ]
    if coded[1] < coded[0]:
        return y.detach(), {name: t.detach() for name, t in side.items()}
    return start
