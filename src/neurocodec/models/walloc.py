"""WaLLoC: wavelet learned lossy compression (Jacobellis & Yadwadkar, "Learned Compression for
Compressed Learning", DCC 2025), for RGB images and for stereo audio.

A shallow, asymmetric autoencoder sandwiched in a fixed, invertible wavelet packet transform
(:mod:`neurocodec.transforms.wavelets`)::

    x -> WPT (J levels) -> X: C * 4**J (images) or C * 2**J (audio) sub-band channels
      -> encoder: one 1x1 projection to ``latent_dim`` channels (linear, a few thousand
         multiply-adds per output position: cheap enough for a phone or a sensor), optionally
         after a small conv stack; times ``latent_scale``; optionally the Gaussian-CDF
         compander that bounds the latent to ``bits`` bits
      -> y: quantized (uniform noise in training, rounding when coding), entropy coded with a
         learned factorized prior per latent channel (:class:`FactorizedLatentCodec`), or
         (with ``hyper_channels=N``) with a mean-scale hyperprior
         (:func:`~neurocodec.models.hyperprior.mean_scale_hyperprior`: a float ``h_a`` on the
         latent, the integer ``h_s``; ``y`` rounded around its means)
      -> decoder, the heavy side: a 1x1 linear synthesis plus a residual network (GroupNorm +
         SiLU residual blocks around one self-attention block at the bottleneck, width
         ``decoder_width``) -> X_hat -> inverse WPT -> clamp to the sample range.

The latent ``y`` is a small, dimension-reduced tensor at ``1 / 2**J`` of the resolution, which
downstream models can learn from directly ("compressed learning").

Differences from the paper's code, and why:

- the latent is entropy coded with a learned factorized prior (or a hyperprior) through our
  rANS coder (real bits), where the paper stores the 8-bit latent as a lossless PNG/WebP; so
  the training loss has a rate term, and ``bits`` (the paper's compander) is optional. The
  hyperprior costs the encoder ``h_a`` and ``h_s`` on the small latent (about as much as the
  packet transform) and saves 15-24 % of the rate on Kodak with the shipped weights
  (``eval/archive/probe_walloc_hyperprior.py`` measured what it could save beforehand);
- ``latent_scale`` is a fixed gain in front of the quantizer (the decoder divides it out): it
  sets the initial quantization step, so Adam trains the projection at unit scale rather than
  having to grow its weights to tens before the rounding resolves anything;
- the decoder adds a 1x1 linear synthesis to its residual network (the paper's decoder is the
  diffusers ``Decoder`` alone), and the linear encoder starts as the codec that keeps the
  ``latent_dim`` lowest-frequency packets (one-hot rows; the linear synthesis starts as their
  transpose, the residual network at zero): training starts from a working codec (a
  downsampling one) instead of from noise, which matters on CPU budgets.

Training contract (:class:`neurocodec.registry.CodecFamily`): ``forward(x)`` returns ``x_hat``, the
likelihoods of ``y`` and ``loss_terms["wavelet_mse"] = wavelet_weight * MSE(X, X_hat)``, the
paper's phi-weighted MSE in the packet domain (in loss units; it also trains the decoder where
the clamped output has no gradient); ``aux_loss()`` fits the prior's quantiles.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neurocodec.entropy.latent_codecs import FactorizedLatentCodec
from neurocodec.entropy.models.base import Mode
from neurocodec.models.base import CompressionModel
from neurocodec.models.hyperprior import mean_scale_hyperprior
from neurocodec.models.layers import conv
from neurocodec.transforms.wavelets import iwpt1d, iwpt2d, packet_frequencies, wpt1d, wpt2d

__all__ = ["Compander", "WaLLoC", "WaLLoCAudio", "WaLLoCImage", "lowest_frequency_packets"]


def _norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 32 groups of at least 4 channels (so a 1x1 map still normalizes)."""
    return nn.GroupNorm(math.gcd(32, max(channels // 4, 1)), channels)


class ResidualBlock(nn.Module):
    """``x + conv(SiLU(GN(conv(SiLU(GN(x))))))``; the last conv starts at zero (the block starts as the identity)."""

    def __init__(self, dims: int, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            _norm(channels), nn.SiLU(), conv(channels, channels, 3, 1, dims),
            _norm(channels), nn.SiLU(), conv(channels, channels, 3, 1, dims),
        )  # fmt: skip
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class AttentionBlock(nn.Module):
    """One-head self-attention inside windows of ``window`` positions (frames, or ``window x window``
    tiles of pixels), residual, GroupNorm first.

    Global attention needs memory quadratic in the positions: 42 GB for ten minutes of audio, 17 GB
    for a 2048x2048 image. Windows bound it (``window^d`` squared per window, ``WINDOWS_AT_ONCE``
    windows at a time) whatever the input size; an input that fits one window attends globally.
    Inputs are zero-padded to whole windows and the padding is masked out of the keys, so every
    output depends only on the real positions of its window.
    """

    WINDOWS_AT_ONCE = 8

    def __init__(self, dims: int, channels: int, window: int | None = None):
        super().__init__()
        self.dims = dims
        self.window = window if window is not None else (4096 if dims == 1 else 64)
        self.norm = _norm(channels)
        self.qkv = conv(channels, 3 * channels, 1, 1, dims)
        self.out = conv(channels, channels, 1, 1, dims)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def _windows(self, t: Tensor, w: tuple[int, ...]) -> Tensor:
        """(N, C, *S) padded to whole windows of sizes ``w`` -> (N * windows, prod(w), C)."""
        n, c = t.shape[:2]
        if self.dims == 1:
            return t.reshape(n, c, -1, w[0]).permute(0, 2, 3, 1).reshape(-1, w[0], c)
        rows, cols = t.shape[2] // w[0], t.shape[3] // w[1]
        t = t.reshape(n, c, rows, w[0], cols, w[1]).permute(0, 2, 4, 3, 5, 1)
        return t.reshape(-1, w[0] * w[1], c)

    def _unwindows(self, t: Tensor, shape: torch.Size, w: tuple[int, ...]) -> Tensor:
        """The inverse of :meth:`_windows` for a padded shape ``(N, C, *S)``."""
        n, c = shape[:2]
        if self.dims == 1:
            return t.reshape(n, -1, w[0], c).permute(0, 3, 1, 2).reshape(shape)
        rows, cols = shape[2] // w[0], shape[3] // w[1]
        return t.reshape(n, rows, cols, w[0], w[1], c).permute(0, 5, 1, 3, 2, 4).reshape(shape)

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[2:]
        w = tuple(min(self.window, s) for s in size)  # an input smaller than a window is one window
        pad = [(-s) % k for s, k in zip(size, w, strict=True)]
        qkv = self.qkv(self.norm(x))
        valid = torch.ones(1, 1, *size, dtype=qkv.dtype, device=x.device)
        if any(pad):
            spec = [a for p in reversed(pad) for a in (0, p)]
            qkv, valid = F.pad(qkv, spec), F.pad(valid, spec)
        q, k, v = (self._windows(part, w) for part in qkv.chunk(3, dim=1))
        keep = self._windows(valid.expand(x.shape[0], 1, *valid.shape[2:]), w) > 0  # (windows, L, 1)
        outs = []
        for i in range(0, q.shape[0], self.WINDOWS_AT_ONCE):
            part = slice(i, i + self.WINDOWS_AT_ONCE)
            # padded keys are masked out; with no padding the mask is dropped (the fast kernels)
            mask = keep[part].transpose(1, 2)[:, None] if any(pad) else None
            outs.append(
                F.scaled_dot_product_attention(q[part, None], k[part, None], v[part, None], attn_mask=mask)[
                    :, 0
                ]
            )
        attended = self._unwindows(torch.cat(outs), qkv[:, : x.shape[1]].shape, w)
        attended = attended[(..., *(slice(0, s) for s in size))]
        return x + self.out(attended)


class Decoder(nn.Module):
    """``y -> X_hat``: a 1x1 linear synthesis plus a residual network with attention at its middle."""

    def __init__(self, dims: int, latent_dim: int, packets: int, width: int, blocks: int):
        super().__init__()
        self.linear = conv(latent_dim, packets, 1, 1, dims)
        self.net = nn.Sequential(
            conv(latent_dim, width, 3, 1, dims),
            ResidualBlock(dims, width),
            AttentionBlock(dims, width),
            ResidualBlock(dims, width),
            *(ResidualBlock(dims, width) for _ in range(blocks)),
            _norm(width),
            nn.SiLU(),
            conv(width, packets, 3, 1, dims),
        )
        nn.init.zeros_(self.net[-1].weight)  # the network starts at zero: the linear path decodes
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, y: Tensor) -> Tensor:
        return self.linear(y) + self.net(y)


class Compander(nn.Module):
    """The paper's Gaussian-CDF compander: ``y -> 2 L (Phi(y / s) - 1/2)``, into ``(-L, L)``.

    ``L = 2**(bits-1) - 1/2 - 1e-3`` and ``s = (2**(bits-1) - 1) / 1.85`` (the paper's ``ToUniform``
    and ``ToNormal``): rounding then leaves at most ``2**bits - 1`` integer values. Near zero
    it is linear with slope ``2 L phi(0) / s`` (about 1.5 for 8 bits), so it bounds the latent
    rather than reshaping it.
    """

    def __init__(self, bits: int):
        super().__init__()
        if not 2 <= bits <= 16:
            raise ValueError(f"the compander takes 2..16 bits, not {bits}")
        self.bits = bits
        self.limit = 2 ** (bits - 1) - 0.5 - 1e-3
        self.scale = (2 ** (bits - 1) - 1) / 1.85

    def forward(self, y: Tensor) -> Tensor:
        return self.limit * torch.erf(y / (self.scale * math.sqrt(2)))

    def inverse(self, u: Tensor) -> Tensor:
        ratio = (u / self.limit).clamp(-1 + 1e-6, 1 - 1e-6)
        return self.scale * math.sqrt(2) * torch.erfinv(ratio)


def lowest_frequency_packets(channels: int, levels: int, dims: int) -> Tensor:
    """Packet channel indexes from the lowest frequencies up, the signal channels interleaved.

    Ranked by the sum, then the largest, of the packet's band indexes along each axis
    (:func:`~neurocodec.transforms.wavelets.packet_frequencies`), then by channel order.
    """
    bands = packet_frequencies(levels, dims)
    rank = sorted(range(len(bands)), key=lambda p: (int(bands[p].sum()), int(bands[p].max()), p))
    per_channel = len(bands)
    return torch.tensor([c * per_channel + p for p in rank for c in range(channels)])


class WaLLoC(CompressionModel):
    """The WaLLoC network for ``dims``-D signals (2: images ``(N, C, H, W)``, 1: audio ``(N, C, T)``).

    Args:
        dims: 2 for images, 1 for audio.
        channels: signal channels ``C`` (3 for RGB, 2 for stereo).
        levels: wavelet packet levels ``J``; the latent is at ``1 / 2**J`` of the resolution.
        latent_dim: latent channels (the paper's RGB_16x: J=3, 12 channels, 16x fewer values).
        decoder_width: channels of the decoder's residual network (the paper: 768 or 1024).
        decoder_blocks: residual blocks after the attention block's pair.
        encoder_width: 0 for the linear encoder (the 1x1 projection alone); else the width of
            a small conv stack (3x3 conv, one residual block) before the projection.
        latent_scale: the fixed gain in front of the quantizer (one step = ``1 / latent_scale``
            in the projection's units). The default 32 makes an image's initial all-low-pass
            latent span about +-128 steps, the range of the paper's 8-bit latent.
        bits: the compander's bits, or None for none (the entropy model alone bounds the rate).
        wavelet: the packet transform's wavelet ("bior4.4" is the paper's CDF 9/7).
        wavelet_weight: phi, the weight of the packet-domain MSE term in the training loss.
        offset: subtracted from the input before the transform (0.5 centres images in [0, 1]).
        sample_range: the valid range of output samples (the reconstruction is clamped to it).
        hyper_channels: 0 for the factorized prior; else the channels ``N`` of a mean-scale
            hyperprior's ``z`` (its integer ``h_s`` is 2-D for images, 1-D for audio). Inputs are
            then padded to a multiple of ``4 * 2**levels``, ``z``'s grid.
    """

    # 0.1.0's layout: the factorized prior or the hyperprior at the top level
    renamed_prefixes = (
        ("entropy_bottleneck.", "latent_codec.entropy_bottleneck."),
        ("hyperprior.gaussian.", "latent_codec.gaussian_conditional."),
        ("hyperprior.", "latent_codec."),
    )

    def __init__(
        self,
        dims: int,
        channels: int,
        levels: int,
        latent_dim: int,
        decoder_width: int = 128,
        decoder_blocks: int = 1,
        encoder_width: int = 0,
        latent_scale: float = 32.0,
        bits: int | None = None,
        wavelet: str = "bior4.4",
        wavelet_weight: float = 0.0,
        offset: float = 0.0,
        sample_range: tuple[float, float] = (-1.0, 1.0),
        hyper_channels: int = 0,
    ):
        super().__init__()
        if dims not in (1, 2):
            raise ValueError(f"dims must be 1 or 2, not {dims}")
        self.dims, self.levels, self.wavelet = dims, levels, wavelet
        self.channels, self.latent_dim = channels, latent_dim
        self.packets = channels * 2 ** (dims * levels)
        self.latent_scale = float(latent_scale)
        self.wavelet_weight = float(wavelet_weight)
        self.offset = float(offset)
        self.sample_range = (float(sample_range[0]), float(sample_range[1]))

        if not 1 <= latent_dim <= self.packets:
            raise ValueError(
                f"latent_dim must be in 1..{self.packets} (the packet channels), not {latent_dim}"
            )
        projection = conv(encoder_width or self.packets, latent_dim, 1, 1, dims)
        nn.init.zeros_(projection.bias)
        self.compander = Compander(bits) if bits is not None else None
        self.hyper_channels = int(hyper_channels)
        if hyper_channels:
            self.latent_codec = mean_scale_hyperprior(latent_dim, hyper_channels, dims=dims)
        else:
            self.latent_codec = FactorizedLatentCodec(latent_dim)
        self.decoder = Decoder(dims, latent_dim, self.packets, decoder_width, decoder_blocks)
        if encoder_width:
            nn.init.orthogonal_(projection.weight)  # unit-norm rows: the latent has the features' scale
            self.encoder = nn.Sequential(
                conv(self.packets, encoder_width, 3, 1, dims), ResidualBlock(dims, encoder_width), projection
            )
        else:
            self.encoder = projection
            with torch.no_grad():  # start as the codec that keeps the lowest-frequency packets
                projection.weight.zero_()
                rows = torch.arange(latent_dim)
                projection.weight[rows, lowest_frequency_packets(channels, levels, dims)[:latent_dim]] = 1.0
                self.decoder.linear.weight.copy_(projection.weight.transpose(0, 1))
                self.decoder.linear.bias.zero_()

    @property
    def step(self) -> int:
        """The latent's downsampling along each side: ``2**levels``."""
        return 2**self.levels

    @property
    def pad_step(self) -> int:
        """Inputs are padded to a multiple of this along each side: :attr:`step`, times 4 with a
        hyperprior (the side of ``z``'s cells)."""
        return self.step * (4 if self.hyper_channels else 1)

    # -- the transforms ------------------------------------------------------------------------

    def analysis(self, x: Tensor) -> Tensor:
        """Samples -> wavelet packets ``X`` (sides must be multiples of :attr:`step`)."""
        wpt = wpt2d if self.dims == 2 else wpt1d
        return wpt(x - self.offset, self.levels, self.wavelet)

    def synthesis(self, X: Tensor) -> Tensor:
        """Wavelet packets -> samples, clamped to ``sample_range``."""
        iwpt = iwpt2d if self.dims == 2 else iwpt1d
        return torch.clamp(iwpt(X, self.levels, self.wavelet) + self.offset, *self.sample_range)

    def encode_latent(self, X: Tensor) -> Tensor:
        """Packets -> the continuous latent ``y`` (what is rounded and coded)."""
        y = self.encoder(X) * self.latent_scale
        return self.compander(y) if self.compander is not None else y

    def decode_latent(self, y_hat: Tensor) -> Tensor:
        """The (quantized) latent -> packets ``X_hat``."""
        if self.compander is not None:
            y_hat = self.compander.inverse(y_hat)
        return self.decoder(y_hat / self.latent_scale)

    # -- training ------------------------------------------------------------------------------

    def forward(self, x: Tensor) -> dict:
        """Training pass: reconstruction, likelihoods of ``y``, the packet-domain MSE term.

        Under autocast only the decoder network runs in reduced precision: the transforms,
        the projection and the quantizer stay in float32 (bf16 resolves 0.5 at a latent of 100).
        """
        with torch.autocast(x.device.type, enabled=False):
            X = self.analysis(x.float())
            y_hat, likelihoods = self.latent_codec(self.encode_latent(X))
        X_hat = self.decode_latent(y_hat).float()
        with torch.autocast(x.device.type, enabled=False):
            x_hat = self.synthesis(X_hat)
        return {
            "x_hat": x_hat,
            "likelihoods": likelihoods,
            "loss_terms": {"wavelet_mse": self.wavelet_weight * torch.mean((X_hat - X) ** 2)},
        }

    def latent_forward(
        self, y: Tensor, side: dict[str, Tensor] | None = None, mode: Mode | None = None
    ) -> dict:
        """The training pass from the latent ``y`` (and its side latents, default derived from
        ``y``) on: ``{"x_hat", "likelihoods"}``, what encoder-side adaptation
        (:mod:`neurocodec.codecs.adapt`) descends. ``mode`` as in the latent codec's ``forward``."""
        y_hat, likelihoods = self.latent_codec(y, side, mode)
        return {"x_hat": self.synthesis(self.decode_latent(y_hat)), "likelihoods": likelihoods}


class WaLLoCImage(WaLLoC):
    """WaLLoC for RGB images in ``[0, 1]``: 2-D packets, default J=3 (192 channels at 1/8 resolution)."""

    def __init__(self, levels: int = 3, latent_dim: int = 12, channels: int = 3, **kwargs):
        super().__init__(2, channels, levels, latent_dim, offset=0.5, sample_range=(0.0, 1.0), **kwargs)


class WaLLoCAudio(WaLLoC):
    """WaLLoC for stereo audio in ``[-1, 1]``: 1-D packets, default J=8 (512 channels at 1/256 of the rate)."""

    def __init__(self, levels: int = 8, latent_dim: int = 64, channels: int = 2, **kwargs):
        super().__init__(1, channels, levels, latent_dim, offset=0.0, sample_range=(-1.0, 1.0), **kwargs)
