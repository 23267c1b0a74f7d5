"""RECOMBINER's network (He, Flamich, Guo, Hernandez-Lobato, ICLR 2024): a Bayesian implicit
neural representation of image patches or audio patches, with a learned prior.

``Arch.dims`` picks the medium: 2, a ``patch x patch`` patch of an RGB image (three outputs, plus
1/2); 1, a patch of ``patch`` samples of one audio signal (one output, around 0), with 1-D
coordinates, a 1-D LPE grid and a 1-D upsampler (the same layers, ``Conv1d`` and linear
interpolation). Everything else is shared. Each patch is a vector ``theta`` of
:attr:`Recombiner.size` coded parameters:

- ``h``, the SIREN's weights in a *linear reparameterisation*: layer ``l`` has the weights and
  biases ``h_l @ A_l`` (``A_l`` a learned square matrix shared by every patch, initialised to the
  SIREN initialisation's standard deviations on its diagonal, so that ``h ~ N(0, 1)`` starts as
  a SIREN);
- the *latent positional encodings* (LPE): ``lpe_channels`` channels at ``patch / 16`` of the
  patch's side (on each of its ``dims`` axes), upsampled by a shared network (bilinear x4, conv 5x5, leaky ReLU, x2, conv 3x3,
  leaky ReLU, x2, conv 3x3 to ``lpe_out`` channels) to one vector per pixel.

The SIREN (``sin(30 x)`` after every hidden layer, a linear output plus 1/2) maps each pixel's
Fourier-embedded coordinates (``fourier`` sines and cosines of ``w_f pi`` times each coordinate in
``[-1, 1]``: ``w_f = 2^f``, or with ``fourier_max`` the paper's ``fourier`` log-spaced frequencies from
1 to ``fourier_max``) concatenated with its upsampled LPE to RGB (audio: the sample).

A patch has a factorised Gaussian posterior ``q`` over ``theta`` (fitted at encode time); every
patch shares the diagonal Gaussian prior ``p`` (:attr:`prior_mean`, :attr:`prior_log_std`),
learned by empirical Bayes (:mod:`neurocodec.train.recombiner`), with the trade-off ``beta`` its
KL budget ended on and ``kl_profile``, the mean KL of each parameter over the training
posteriors (the codec's block grouping).

Simplification: the paper's hierarchical model (patch, group-of-patches and image latents,
3 levels) is reduced to the patch level: patches are independent given the prior. The CPU
defaults are also narrower than the paper's LPE (128 channels, upsampler 64 wide): see
:data:`CPU_ARCH`.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neurocodec.entropy.relative_entropy import splitmix64

OMEGA = 30.0  # sin(30 x)
# a posterior starts at this log-ratio of standard deviations to the prior's (at -1.5 the noise
# held the training fits at 12-15 dB PSNR for 5 iterations; at -4 they reached 25 dB in 3)
INIT_LOG_STD_OFFSET = -4.0
LOG_STD_LR_SCALE = 2.5  # the posteriors' log-std learn this much faster than their means


@dataclass(frozen=True)
class Arch:
    patch: int = 64  # pixels of a side (dims 2), samples (dims 1)
    hidden: int = 32
    layers: int = 3  # hidden layers
    fourier: int = 4  # frequencies per coordinate: 4 * 2 coordinates * (sin, cos) = 16 inputs
    # 0: the frequencies are 1, 2, 4, ... 2^(fourier - 1); N: log-spaced from 1 to N, as the paper's
    # code has them (N = 1024: up to 1024 periods a patch, past the patch's Nyquist rate: aliased,
    # they give the SIREN fine detail to combine)
    fourier_max: int = 0
    lpe_channels: int = 32
    lpe_width: int = 16  # the upsampler's width
    lpe_out: int = 16
    dims: int = 2  # 2: RGB image patches; 1: patches of one audio signal

    @property
    def outputs(self) -> int:
        return 3 if self.dims == 2 else 1

    @property
    def offset(self) -> float:
        """Added to the SIREN's output: the middle of the samples' range."""
        return 0.5 if self.dims == 2 else 0.0

    def check(self) -> None:
        if self.dims not in (1, 2):
            raise ValueError(f"a RECOMBINER patch has 1 (audio) or 2 (image) dimensions, not {self.dims}")
        top = 256 if self.dims == 2 else 16384
        if self.patch % 16 or not 16 <= self.patch <= top:
            raise ValueError(
                f"a RECOMBINER patch is 16 to {top} samples a side, a multiple of 16, not {self.patch}"
            )
        for name in ("hidden", "layers", "fourier", "lpe_channels", "lpe_width", "lpe_out"):
            if not 1 <= getattr(self, name) <= 256:
                raise ValueError(f"RECOMBINER's {name} must be 1..256")
        if self.fourier_max != 0 and not 2 <= self.fourier_max <= 65536:
            raise ValueError(f"RECOMBINER's fourier_max must be 0 or 2..65536, not {self.fourier_max}")


CPU_ARCH = asdict(Arch())  # the paper: lpe_channels 128, lpe_width 64 (too slow to fit on 2 CPU cores)
# audio: 1024-sample patches (23 ms at 44.1 kHz), 8 frequencies (up to 128 periods a patch), LPE
# at one vector per 16 samples
AUDIO_ARCH = asdict(Arch(patch=1024, fourier=8, dims=1))


class Upsampler(nn.Module):
    """The shared LPE upsampler: (P, C, s, s) -> (P, out, 16 s, 16 s); with ``dims`` 1,
    (P, C, s) -> (P, out, 16 s)."""

    def __init__(self, channels: int, width: int, out: int, dims: int = 2) -> None:
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv1d
        self.conv1 = conv(channels, width, 5, padding=2)
        self.conv2 = conv(width, width, 3, padding=1)
        self.conv3 = conv(width, out, 3, padding=1)
        self.conv_fn = F.conv2d if dims == 2 else F.conv1d
        self.mode = "bilinear" if dims == 2 else "linear"

    def forward(self, lpe: Tensor) -> Tensor:
        """In ``lpe``'s dtype (the module's own parameters stay float32)."""

        def conv(y: Tensor, layer: nn.Module) -> Tensor:
            return self.conv_fn(y, layer.weight.to(y.dtype), layer.bias.to(y.dtype), padding=layer.padding)

        y = F.interpolate(lpe, scale_factor=4, mode=self.mode, align_corners=False)
        y = F.leaky_relu(conv(y, self.conv1), 0.2)
        y = F.interpolate(y, scale_factor=2, mode=self.mode, align_corners=False)
        y = F.leaky_relu(conv(y, self.conv2), 0.2)
        y = F.interpolate(y, scale_factor=2, mode=self.mode, align_corners=False)
        return conv(y, self.conv3)


def fourier_features(
    size: int, frequencies: int, dtype: torch.dtype = torch.float32, dims: int = 2, top: int = 0
) -> Tensor:
    """(size^dims, 2 dims frequencies): sin and cos of w_f pi times the pixel (sample) centres'
    coordinates in [-1, 1], w_f = 2^f (``top`` 0) or ``frequencies`` log-spaced from 1 to ``top``
    (float64, then ``dtype``)."""
    c = (torch.arange(size, dtype=torch.float64) + 0.5) / size * 2 - 1
    if dims == 1:
        coords = c[:, None]
    else:
        yy, xx = torch.meshgrid(c, c, indexing="ij")
        coords = torch.stack([yy.reshape(-1), xx.reshape(-1)], 1)
    if top:
        w = torch.exp(torch.linspace(0, math.log(top), frequencies, dtype=torch.float64)).tolist()
    else:
        w = [2.0**f for f in range(frequencies)]
    scaled = torch.cat([coords * (f * math.pi) for f in w], 1)
    return torch.cat([torch.sin(scaled), torch.cos(scaled)], 1).to(dtype)


def layer_shapes(arch: Arch) -> list[tuple[int, int]]:
    """(inputs, outputs) of each SIREN layer."""
    widths = [2 * arch.dims * arch.fourier + arch.lpe_out] + [arch.hidden] * arch.layers + [arch.outputs]
    return list(itertools.pairwise(widths))


def fixed_permutation(n: int) -> np.ndarray:
    """A permutation of ``range(n)`` that is a pure function of ``n`` (sort by a 64-bit hash): the
    order in which the codec groups parameters into blocks, mixing layers and the LPE."""
    keys = splitmix64(np.arange(n, dtype=np.uint64) + np.uint64(0x5EED))
    return np.argsort(keys, kind="stable")


class Recombiner(nn.Module):
    """Shared parts (``A`` matrices, LPE upsampler) and the learned prior of RECOMBINER patches
    (image or audio: ``dims``)."""

    def __init__(self, **arch) -> None:
        super().__init__()
        self.arch = Arch(**arch)
        self.arch.check()
        a = self.arch
        self.shapes = layer_shapes(a)
        self.layer_sizes = [i * o + o for i, o in self.shapes]
        self.lpe_shape = (a.lpe_channels,) + (a.patch // 16,) * a.dims
        self.lpe_size = math.prod(self.lpe_shape)
        self.size = sum(self.layer_sizes) + self.lpe_size
        self.A = nn.ParameterList(
            [nn.Parameter(torch.diag(self._init_std(i))) for i in range(len(self.shapes))]
        )
        self.upsampler = Upsampler(a.lpe_channels, a.lpe_width, a.lpe_out, a.dims)
        self.register_buffer("prior_mean", torch.zeros(self.size))
        self.register_buffer("prior_log_std", torch.zeros(self.size))
        self.register_buffer("kl_profile", torch.ones(self.size))
        self.register_buffer("beta", torch.tensor(1e-4))
        self.register_buffer(
            "fourier", fourier_features(a.patch, a.fourier, dims=a.dims, top=a.fourier_max), persistent=False
        )

    def _init_std(self, layer: int) -> Tensor:
        """SIREN's initial standard deviations of layer ``layer``'s weights then biases."""
        fan_in, fan_out = self.shapes[layer]
        if layer == 0:
            w = 1 / (fan_in * math.sqrt(3))
        else:
            w = math.sqrt(2 / fan_in) / OMEGA
        b = 1 / math.sqrt(3 * fan_in)
        return torch.cat([torch.full((fan_in * fan_out,), w), torch.full((fan_out,), b)])

    # ----------------------------------------------------------------------------------------

    def prior_std(self) -> Tensor:
        return torch.exp(self.prior_log_std)

    def kl_bits(self, mean: Tensor, log_std: Tensor) -> Tensor:
        """KL(q || p) in bits of each parameter of posteriors (P, size)."""
        p_log_std = self.prior_log_std
        ratio = torch.exp(2 * (log_std - p_log_std))
        nats = 0.5 * (ratio + ((mean - self.prior_mean) / torch.exp(p_log_std)) ** 2 - 1) - (
            log_std - p_log_std
        )
        return nats / math.log(2)

    def layers(self, theta: Tensor) -> list[tuple[Tensor, Tensor]]:
        """(weight (P, out, in), bias (P, 1, out)) of each SIREN layer of parameters ``theta`` (P, size)."""
        out, start = [], 0
        for (fan_in, fan_out), n, A in zip(self.shapes, self.layer_sizes, self.A, strict=True):
            w = theta[:, start : start + n] @ A.to(theta.dtype)
            start += n
            weight = w[:, : fan_in * fan_out].reshape(-1, fan_out, fan_in)
            out.append((weight, w[:, fan_in * fan_out :].unsqueeze(1)))
        return out

    def forward(self, theta: Tensor) -> Tensor:
        """The patches (P, 3, patch, patch) of parameters ``theta`` (P, size), in theta's dtype
        (audio: (P, 1, patch))."""
        p = theta.shape[0]
        a = self.arch
        lpe = theta[:, -self.lpe_size :].reshape(p, *self.lpe_shape)
        features = self.upsampler(lpe).flatten(2).transpose(1, 2)  # (P, pixels, lpe_out)
        x = torch.cat([self.fourier.to(theta.dtype).expand(p, -1, -1), features], 2)
        layers = self.layers(theta)
        for weight, bias in layers[:-1]:  # sin(30 (W x + b)) as sin((30 W) x + 30 b): one pass fewer
            x = torch.sin(torch.bmm(x, (OMEGA * weight).transpose(1, 2)).add_(OMEGA * bias))
        weight, bias = layers[-1]
        y = torch.bmm(x, weight.transpose(1, 2)).add_(bias + a.offset)
        return y.transpose(1, 2).reshape(p, a.outputs, *(a.patch,) * a.dims)


def to_patches(x: Tensor, patch: int) -> Tensor:
    """(P, C, patch, patch) patches of ``x`` (1, C, H, W), H and W multiples of ``patch``, raster order."""
    _, c, h, w = x.shape
    y = x.reshape(c, h // patch, patch, w // patch, patch).permute(1, 3, 0, 2, 4)
    return y.reshape(-1, c, patch, patch)


def from_patches(patches: Tensor, rows: int, cols: int) -> Tensor:
    """The image (1, C, rows patch, cols patch) of patches in raster order."""
    _, c, s, _ = patches.shape
    y = patches.reshape(rows, cols, c, s, s).permute(2, 0, 3, 1, 4)
    return y.reshape(1, c, rows * s, cols * s)


# --------------------------------------------------------------------------------------------
# Posteriors


class Posterior(nn.Module):
    """Factorised Gaussian posteriors of ``count`` patches: ``mean`` and ``log_std`` (count, size).
    Parameters marked ``coded`` are fixed to ``values`` (the samples already transmitted): they
    are not sampled and their KL is not counted (it is paid)."""

    def __init__(
        self,
        model: Recombiner,
        count: int,
        init_noise: float | Tensor = 0.0,
        log_std_offset: float | Tensor = INIT_LOG_STD_OFFSET,
    ):
        """``init_noise`` and ``log_std_offset`` may be given per parameter, tensors (size,)."""
        super().__init__()
        mean = model.prior_mean.detach().expand(count, -1).clone()
        if isinstance(init_noise, Tensor) or init_noise:
            mean = mean + init_noise * torch.randn_like(mean) * model.prior_std().detach()
        self.mean = nn.Parameter(mean)
        self.log_std = nn.Parameter(model.prior_log_std.detach().expand(count, -1).clone() + log_std_offset)
        self.register_buffer("coded", torch.zeros(count, model.size, dtype=torch.bool))
        self.register_buffer("values", torch.zeros(count, model.size))

    def sample(self) -> Tensor:
        theta = self.mean + torch.exp(self.log_std) * torch.randn_like(self.mean)
        return torch.where(self.coded, self.values, theta)

    def kl_bits(self, model: Recombiner) -> Tensor:
        """The KL of each patch's parameters not yet coded, in bits (count,)."""
        kl = model.kl_bits(self.mean, self.log_std)
        return torch.where(self.coded, torch.zeros_like(kl), kl).sum(1)


def posterior_optimizer(posterior: Posterior, lr: float) -> torch.optim.Adam:
    """Adam on a posterior: ``lr`` for the means, ``LOG_STD_LR_SCALE * lr`` for the log-stds
    (parameters that carry nothing drift back to the prior faster, lowering the KL sooner)."""
    return torch.optim.Adam(
        [
            {"params": [posterior.mean], "lr": lr, "scale": 1.0},
            {"params": [posterior.log_std], "lr": lr * LOG_STD_LR_SCALE, "scale": LOG_STD_LR_SCALE},
        ]
    )


def elbo_loss(
    model: Recombiner, posterior: Posterior, patches: Tensor, beta: float
) -> tuple[Tensor, Tensor, Tensor]:
    """(loss, MSE, KL bits per pixel) of ``posterior`` on ``patches`` (P, 3, s, s): the mean over
    patches of ``MSE + beta * KL/pixels``, with one reparameterised sample of each posterior.
    Audio patches (P, 1, s): per sample."""
    x_hat = model(posterior.sample())
    axes = tuple(range(1, patches.ndim))
    mse = torch.mean((x_hat - patches) ** 2, dim=axes)
    kl_bpp = posterior.kl_bits(model) / math.prod(patches.shape[2:])
    return torch.mean(mse + beta * kl_bpp), mse.mean(), kl_bpp.mean()


class BetaController:
    """RECOMBINER's KL budget: beta x 1.5 above ``budget`` bits per pixel, / 1.5 below ``budget -
    band``; but not while the KL is already moving the right way by more than ``settle`` (10 %)
    since the last update. That hold is ours: with a few epochs an iteration instead of the
    paper's 100, the posteriors lag beta by several iterations, and without it beta overshot
    200-fold (x1.5 per iteration while the KL was still falling), pushing most parameters to the
    prior for good (0 of 512 LPE parameters carried 0.1 bit after 115 iterations)."""

    def __init__(self, budget: float, band: float, beta: float, settle: float = 0.1) -> None:
        self.budget, self.band, self.beta, self.settle = budget, band, beta, settle
        self.last: float | None = None

    def update(self, kl_bpp: float) -> float:
        last, self.last = self.last, kl_bpp
        falling = last is not None and kl_bpp < (1 - self.settle) * last
        rising = last is not None and kl_bpp > (1 + self.settle) * last
        if kl_bpp > self.budget and not falling:
            self.beta *= 1.5
        elif kl_bpp < self.budget - self.band and not rising:
            self.beta /= 1.5
        return self.beta


# --------------------------------------------------------------------------------------------
# Audio


def to_signals(x: Tensor) -> Tensor:
    """The signals (C, T) that ``recombiner-audio`` codes of audio ``x`` (C, T), C 1 or 2: mono as
    it is, stereo as mid ``(L + R) / 2`` and side ``(L - R) / 2`` (both in [-1, 1])."""
    if x.shape[0] == 2:
        return torch.stack([(x[0] + x[1]) / 2, (x[0] - x[1]) / 2])
    return x


def from_signals(signals: Tensor) -> Tensor:
    """The audio (C, T) of coded signals (:func:`to_signals` undone: L = M + S, R = M - S)."""
    if signals.shape[0] == 2:
        return torch.stack([signals[0] + signals[1], signals[0] - signals[1]])
    return signals


def to_segments(signals: Tensor, patch: int) -> Tensor:
    """(P, 1, patch) patches of ``signals`` (C, T), T a multiple of ``patch``: signal by signal, in time order."""
    c, t = signals.shape
    return signals.reshape(c * (t // patch), 1, patch)


def from_segments(patches: Tensor, signals: int) -> Tensor:
    """The signals (C, T) of patches (P, 1, patch) in :func:`to_segments`' order."""
    return patches.reshape(signals, -1)
