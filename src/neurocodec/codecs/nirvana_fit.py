"""Fitting the ``nirvana`` codec's networks to a video, group by group (encoder side only).

The loss is the codec convention ``lambda * 255^2 * MSE + bpp``: MSE over the group's true
frames and pixels (padding excluded), its channels weighted (:data:`CHANNEL_WEIGHTS`: alike for
RGB, 6:1:1 for Y, Cb, Cr planes as PSNR-YUV weights them), bpp = the estimated bits of the
group's coded integers / (frames x height x width of the group).

Quantization: every parameter tensor ``i`` (:func:`~neurocodec.models.nirvana.parameter_tensors`)
is coded as integers ``n = round(w * 2^k_i)``, one step ``2^-k_i`` a tensor for the whole video.
Training rounds straight-through (the forward pass sees ``n * 2^-k``, the gradient is the
identity's), and the rate term is the bits of the coded integers under a zero-mean discretized
Laplace of scale ``b = mean |d|`` (held constant in the gradient; clamped to the coding tables'
range and to at least ``rate_floor``, 0.25: a group that starts as its predecessor has all
``d = 0``, and at the tables' smallest scale its first change would cost ~25 bits, which froze
whole groups in our first carphone runs), with ``d = n`` for group 0 and ``d = n_g - n_{g-1}``
for the later groups: those differences are what the file codes, so the rate pulls each group's
integers toward its predecessor's.

Schedule (:class:`Schedule`), for ``iterations`` N:

- group 0: ``first * N`` iterations: ``1 - quantized`` of them in float (Adam, ``lr`` = 1e-2 on a
  cosine to 0, no rate), then :func:`choose_steps` picks each tensor's ``k`` greedily for the lowest
  ``lambda * 255^2 * MSE + bpp`` (bits by :func:`neurocodec.codecs.c3_fit.parameter_cost`), then
  the rest with straight-through rounding and the rate (``fine_lr`` = 3e-3 on a cosine to 0);
- group g > 0: starts from group g-1's quantized network (autoregressive initialization, all
  differences 0) and runs N straight-through iterations with the rate (``fine_lr``, cosine).

Each straight-through phase ends on the parameters with the lowest loss seen (the loss of an
iteration is measured before its update, so it is the loss of the parameters it saw).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import functional_call

from neurocodec.codecs import c3_fit
from neurocodec.models.c3 import log_scale_bounds
from neurocodec.models.nirvana import GroupNet, assemble, coded_rows, parameter_tensors

__all__ = [
    "CHANNEL_WEIGHTS",
    "GroupFit",
    "Schedule",
    "channel_weights",
    "choose_steps",
    "fit_group",
    "group_sizes",
    "laplace_bits",
    "new_problem",
]

MSE_SCALE = 255.0**2
CHANNEL_WEIGHTS = {"rgb": (1 / 3, 1 / 3, 1 / 3), "yuv": (6 / 8, 1 / 8, 1 / 8)}  # by colour family
STEP_CANDIDATES = range(2, 17)  # step exponents k tried by choose_steps (step 2^-k)
_LOG_B = log_scale_bounds()  # ln of the smallest and largest coding-table scale
LN2 = math.log(2)
SCENE_CUT = 24.0  # mean absolute change (8-bit levels) from the frame before that starts a group


@dataclass(frozen=True)
class Schedule:
    """Fitting iterations: ``iterations`` per group after the first, ``first`` times that for group 0."""

    iterations: int
    first: int = 4
    quantized: float = 0.25  # share of group 0's iterations with straight-through rounding
    lr: float = 1e-2  # group 0's float phase
    fine_lr: float = 3e-3  # straight-through phases (group 0's last share, every later group)
    # the rate proxy's smallest Laplace scale: from all-zero differences (a group that starts as its
    # predecessor), the first change of an integer costs ~4 bits rather than ~25 (scale 0.03)
    rate_floor: float = 0.25
    # group 0's bits count this much in its loss (its network is the base of every later group)
    first_rate: float = 1.0
    # later groups go on with the previous group's Adam moments rather than a fresh Adam: about
    # even on carphone's first 24 frames (q3, fast: -2 % bytes, +0.02 dB), so off
    keep_adam: bool = False


@dataclass
class GroupFit:
    """A fitted group: its integers per tensor (int64, file order) and its training-side loss terms."""

    ints: list[Tensor]
    bits: float  # estimated bits of its coded differences
    mse: float  # of the quantized network on the group's true pixels (float32)


def laplace_bits(d: Tensor, floor: float = 0.0) -> Tensor:
    """Bits of the integers ``d`` (float, maybe straight-through) under a zero-mean discretized
    Laplace of scale ``mean |d|`` (detached, clamped to the tables' range and to at least
    ``floor``): differentiable in ``d``."""
    v = d.abs()
    lo, hi = _LOG_B
    b = v.detach().mean().clamp(max(math.exp(lo), floor), math.exp(hi))
    far = 1 - (0.5 - v.clamp_min(0.5)) / (b * LN2) - torch.log2(-torch.expm1(-1 / b))
    near = -torch.log2(-torch.expm1(-0.5 / b))
    return torch.where(v >= 0.5, far, near).sum()


def _round_ste(w: Tensor, k: int) -> Tensor:
    """``w * 2^k`` rounded to an integer, with the identity's gradient."""
    s = w * 2.0**k
    return s + (torch.round(s) - s).detach()


class _Problem:
    """One group's fitting problem: the network's inputs, the target and the loss."""

    def __init__(
        self,
        net: GroupNet,
        x: Tensor,
        features: Tensor,
        rows: int,
        cols: int,
        frames: int,
        lmbda: float,
        weights: tuple[float, ...],
    ):
        # x: (C, G, Hpad, Wpad) padded target; frames/size: what counts in the loss
        self.net, self.x, self.features = net, x, features
        self.rows, self.cols, self.frames, self.lmbda = rows, cols, frames, lmbda
        self.weights = torch.tensor(weights, dtype=x.dtype, device=x.device)
        self.h, self.w = x.shape[-2:]
        self.coded = coded_rows(net.arch, frames)  # the leading rows of each tensor the group codes

    def set_size(self, h: int, w: int) -> None:
        self.h, self.w = h, w

    def mse(self, params: dict[str, Tensor] | None = None) -> Tensor:
        out = (
            self.net(self.features) if params is None else functional_call(self.net, params, (self.features,))
        )
        y = assemble(out, self.net.arch, self.rows, self.cols)
        diff = y[:, : self.frames, : self.h, : self.w] - self.x[:, : self.frames, : self.h, : self.w]
        return (diff.square().mean((1, 2, 3)) * self.weights).sum()

    @property
    def pixels(self) -> int:
        return self.frames * self.h * self.w


def _quantized_loss(
    problem: _Problem,
    steps: list[int],
    previous: list[Tensor] | None,
    floor: float = 0.0,
    weight: float = 1.0,
) -> tuple[Tensor, Tensor, Tensor, list[Tensor]]:
    """(loss, bits, mse, integers) of the network rounded straight-through to ``steps``; the rate
    proxy's scale at least ``floor``, its bits weighted by ``weight`` in the loss. Rows a group
    does not code (the frames it lacks, :func:`~neurocodec.models.nirvana.coded_rows`) keep the
    previous group's integers (0 for the first group)."""
    ints, params, bits = [], {}, 0.0
    for (name, w), k, i in zip(parameter_tensors(problem.net), steps, range(len(steps)), strict=True):
        n, rows = _round_ste(w, k), problem.coded[i]
        if rows < len(n):
            kept = previous[i][rows:] if previous is not None else torch.zeros_like(n[rows:])
            n = torch.cat([n[:rows], kept])
        params[name] = n * 2.0**-k
        d = n if previous is None else n - previous[i]
        bits = bits + laplace_bits(d[:rows], floor)
        ints.append(n)
    mse = problem.mse(params)
    loss = problem.lmbda * MSE_SCALE * mse + weight * bits / problem.pixels
    return loss, bits, mse, ints


def _cosine(opt: torch.optim.Optimizer, base: float, i: int, n: int) -> None:
    for group in opt.param_groups:
        group["lr"] = base * 0.5 * (1 + math.cos(math.pi * i / max(1, n)))


def _train_quantized(
    problem: _Problem,
    steps: list[int],
    previous: list[Tensor] | None,
    iterations: int,
    lr: float,
    tick: Callable,
    floor: float,
    weight: float,
    opt: torch.optim.Optimizer | None = None,
) -> torch.optim.Optimizer:
    """Straight-through training with the rate; leaves the best parameters seen in the network.
    ``opt``: an Adam over the network's parameters to go on with (its moments), else a new one."""
    params = [w for _, w in parameter_tensors(problem.net)]
    opt = opt if opt is not None else torch.optim.Adam(params, lr=lr)
    best, best_state = math.inf, None
    for i in range(iterations):
        _cosine(opt, lr, i, iterations)
        loss, bits, mse, _ = _quantized_loss(problem, steps, previous, floor, weight)
        if loss.item() < best:
            best, best_state = loss.item(), [p.detach().clone() for p in params]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        tick(mse.item(), bits.item())
    with torch.no_grad():
        loss = _quantized_loss(problem, steps, previous, floor, weight)[0].item()
        if best_state is not None and best < loss:
            for p, s in zip(params, best_state, strict=True):
                p.copy_(s)
    return opt


def choose_steps(problem: _Problem, weight: float = 1.0) -> list[int]:
    """Each tensor's step exponent, greedily in file order (later tensors still in float): the ``k``
    of :data:`STEP_CANDIDATES` with the lowest ``lambda * 255^2 * MSE + bpp`` of the integers
    coded whole (group 0). The network's float parameters are left as they were."""
    tensors = parameter_tensors(problem.net)
    chosen: dict[str, Tensor] = {}
    steps = []
    bits_so_far = 0.0
    with torch.no_grad():
        for (name, w), rows in zip(tensors, problem.coded, strict=True):
            best = None
            for k in STEP_CANDIDATES:
                n = torch.round(w * 2.0**k)
                bits = c3_fit.parameter_cost(n[:rows])[1]
                params = {**{nm: t for nm, t in tensors}, **chosen, name: n * 2.0**-k}
                loss = problem.lmbda * MSE_SCALE * problem.mse(params).item()
                loss += weight * (bits_so_far + bits) / problem.pixels
                if best is None or loss < best[0]:
                    best = (loss, k, bits)
            _, k, bits = best
            steps.append(k)
            bits_so_far += bits
            chosen[name] = torch.round(w * 2.0**k) * 2.0**-k
    return steps


def fit_group(
    problem: _Problem,
    schedule: Schedule,
    steps: list[int] | None,
    previous: list[Tensor] | None,
    tick: Callable[[float, float], None],
    carry: dict | None = None,
) -> tuple[GroupFit, list[int]]:
    """Fit ``problem.net`` (group 0 when ``previous`` is None: float phase, step choice, quantized
    phase; otherwise the quantized phase from its current parameters, which are group g-1's)."""
    net = problem.net
    carry = {} if carry is None else carry
    if previous is None:
        total = schedule.iterations * schedule.first
        fine = int(total * schedule.quantized)
        float_its = total - fine
        opt = torch.optim.Adam(net.parameters(), lr=schedule.lr)
        for i in range(float_its):
            _cosine(opt, schedule.lr, i, float_its)
            mse = problem.mse()
            opt.zero_grad(set_to_none=True)
            mse.backward()
            opt.step()
            tick(mse.item(), 0.0)
        steps = choose_steps(problem, schedule.first_rate)
        opt = _train_quantized(
            problem, steps, None, fine, schedule.fine_lr, tick, schedule.rate_floor, schedule.first_rate
        )
    else:
        opt = _train_quantized(
            problem,
            steps,
            previous,
            schedule.iterations,
            schedule.fine_lr,
            tick,
            schedule.rate_floor,
            1.0,
            carry.get("adam") if schedule.keep_adam else None,
        )
    carry["adam"] = opt
    with torch.no_grad():
        _, bits, mse, ints = _quantized_loss(problem, steps, previous)
        ints = [n.detach().to(torch.int64) for n in ints]
        # the network itself holds the quantized values: the next group starts from them
        for (_, w), n, k in zip(parameter_tensors(net), ints, steps, strict=True):
            w.copy_(n.to(w.dtype) * 2.0**-k)
    return GroupFit(ints, bits.item(), mse.item()), steps


def channel_weights(channels: int, colour: str) -> tuple[float, ...]:
    """How the loss weights the channels of a video of ``colour`` (:data:`CHANNEL_WEIGHTS`; alike
    when the channel count is not that family's)."""
    weights = CHANNEL_WEIGHTS["rgb" if colour == "rgb" else "yuv"]
    return weights if channels == len(weights) else (1 / channels,) * channels


def group_sizes(x: Tensor, most: int, budget: float | None, colour: str = "rgb") -> list[int]:
    """Frames per group for the video ``x`` (C, T, H, W) in [0, 1], by motion: the first group has
    ``most`` frames (every frame head of the network is trained there); each later group takes
    frames while it has fewer than ``most`` and the motion it spans -- the sum over its frames
    after the first of the mean absolute change from the frame before, in 8-bit levels, the
    channels weighted as the loss weights them -- stays within ``budget``, and starts afresh at a
    change above :data:`SCENE_CUT`. ``budget`` None: groups of ``most`` (the last one shorter)."""
    t = x.shape[1]
    if budget is None:
        return [min(most, t - s) for s in range(0, t, most)]
    w = torch.tensor(channel_weights(x.shape[0], colour), dtype=torch.float64)
    change = [0.0] + [
        float((x[:, i] - x[:, i - 1]).abs().mean((1, 2)).double().cpu() @ w) * 255 for i in range(1, t)
    ]
    sizes = [min(most, t)]
    start = sizes[0]
    while start < t:
        n, spent = 1, 0.0
        while start + n < t and n < most:
            m = change[start + n]
            if m > SCENE_CUT or spent + m > budget:
                break
            spent, n = spent + m, n + 1
        sizes.append(n)
        start += n
    return sizes


def new_problem(
    x: Tensor,
    features: Tensor,
    rows: int,
    cols: int,
    frames: int,
    size: tuple[int, int],
    lmbda: float,
    net: GroupNet,
    colour: str = "rgb",
) -> _Problem:
    """The fitting problem of one group: ``x`` (C, G, Hpad, Wpad) of which ``frames`` frames and
    ``size`` (h, w) are the video's; ``colour`` (the container's) picks the channel weights."""
    problem = _Problem(net, x, features, rows, cols, frames, lmbda, channel_weights(x.shape[0], colour))
    problem.set_size(*size)
    return problem
