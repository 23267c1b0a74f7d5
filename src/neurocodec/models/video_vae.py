"""The video VAE (after Xing et al., "Large Motion Video Autoencoding with Cross-modal Video VAE",
arXiv 2412.17805), at a size one CPU trains: a 2+1-D spatial autoencoder, a temporal (motion)
compressor and the mean-scale hyperprior on the latent (:func:`~neurocodec.models.hyperprior.mean_scale_hyperprior`).

**Stage 1, temporal-aware spatial compression** (:class:`SpatialEncoder`, :class:`SpatialDecoder`):
three stride-2 stages of 2-D convolutions (frames folded into the batch), each followed by a
residual block and a :class:`CausalTimeConv` (a residual 1-D convolution along time, kernel 3,
zero-initialised, causal: output frame ``t`` sees frames ``<= t``). 8x8 spatial downsampling to
``latent`` channels.

**Stage 2, motion compression** (:class:`MotionEncoder`, :class:`MotionDecoder`): the stage-1 latent
of each group of :data:`GROUP` = 4 frames is reduced to one latent frame by two stride-2 convolutions
along time (4x8x8 in all). The decoder expands a group's latent back to 4 frames from the group's
decoded latent and the previous group's (zero for the first group): causal, so a stream decodes
group by group (:meth:`VideoVAE.decode_groups`, with the temporal convolutions' carried state).

**Joint image/video:** an image ``(N, 3, H, W)`` (or a one-frame video) bypasses every temporal
layer and the motion compressor: its stage-1 latent is coded as it is.

**Text guidance (optional):** with ``text_dim > 0`` a :class:`TextCrossAttention` (zero-initialised
residual cross-attention of the latent's positions on text embeddings ``(N, L, text_dim)``) sits in
the motion encoder and decoder; without ``text_dim`` the module is absent, and a model that has it
runs without text when none is given.

Departures from the paper: no KL posterior (the latent is quantized and entropy coded instead, as
every codec of this library; training is rate-distortion), widths of tens of channels instead of
hundreds, no spatial attention, no GAN or LPIPS, the temporal convolutions are 1-D (kernel 3x1x1,
causal) instead of 3x3x3, and the motion compressor works group-wise (stride-2 convolutions inside
a 4-frame group) with the previous group's latent as the decoder's context.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neurocodec.entropy import tables
from neurocodec.entropy.latent_codecs import TemporalLatentCodec
from neurocodec.entropy.latent_codecs.temporal import fold, unfold
from neurocodec.entropy.models.base import Mode
from neurocodec.models.base import CompressionModel
from neurocodec.models.context import TemporalPrior
from neurocodec.models.hyperprior import HyperSynthesis, hyper_analysis, mean_scale_hyperprior
from neurocodec.models.layers import conv, deconv
from neurocodec.text import TEXT_MODELS

__all__ = [
    "GROUP",
    "CausalTimeConv",
    "MotionDecoder",
    "MotionEncoder",
    "SpatialDecoder",
    "SpatialEncoder",
    "TextCrossAttention",
    "VideoVAE",
    "temporal_hyperprior",
]

GROUP = 4  # frames per latent frame (the motion compressor's temporal downsampling)
TIME_KERNEL = 3  # taps of the causal temporal convolutions


def _frames(x: Tensor) -> tuple[Tensor, int]:
    """A video ``(N, C, T, H, W)`` as frames ``(N T, C, H, W)``, and T."""
    n, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(n * t, c, h, w), t


def _video(x: Tensor, t: int) -> Tensor:
    """Frames ``(N T, C, H, W)`` back to a video ``(N, C, T, H, W)``."""
    nt, c, h, w = x.shape
    return x.reshape(nt // t, t, c, h, w).transpose(1, 2)


class CausalTimeConv(nn.Module):
    """``x + conv_t(x)``: a residual convolution along time of a video ``(N, C, T, H, W)``, kernel
    :data:`TIME_KERNEL`, causal (frame ``t`` sees frames ``t-2 .. t``; before the first frame the
    first frame is repeated), zero-initialised (a new layer starts as the identity).

    In :func:`streaming` mode it carries its last ``kernel - 1`` input frames from one call to
    the next, so a video decoded in chunks gives what one call on the whole video gives."""

    def __init__(self, channels: int, kernel: int = TIME_KERNEL):
        super().__init__()
        self.kernel = kernel
        self.conv = nn.Conv3d(channels, channels, (kernel, 1, 1))
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.streaming = False
        self.carried: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.streaming and self.carried is not None:
            before = self.carried
        else:
            before = x[:, :, :1].expand(-1, -1, self.kernel - 1, -1, -1)
        full = torch.cat([before, x], dim=2)
        if self.streaming:
            self.carried = full[:, :, -(self.kernel - 1) :]
        return x + self.conv(full)


@contextmanager
def streaming(module: nn.Module) -> Iterator[None]:
    """Every :class:`CausalTimeConv` of ``module`` carries its state between calls, from none."""
    layers = [m for m in module.modules() if isinstance(m, CausalTimeConv)]
    for m in layers:
        m.streaming, m.carried = True, None
    try:
        yield
    finally:
        for m in layers:
            m.streaming, m.carried = False, None


class ResBlock(nn.Module):
    """``x + conv(act(conv(act(x))))``, 3x3 2-D convolutions."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.LeakyReLU(0.1),
            conv(channels, channels, 3, 1),
            nn.LeakyReLU(0.1),
            conv(channels, channels, 3, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class _Stage(nn.Module):
    """An encoder stage: a stride-2 5x5 convolution, a residual block, and the causal temporal
    convolution after them (skipped for images)."""

    def __init__(self, inputs: int, channels: int):
        super().__init__()
        self.spatial, self.res = conv(inputs, channels), ResBlock(channels)
        self.time = CausalTimeConv(channels)

    def forward(self, x: Tensor, t: int | None) -> Tensor:
        """``x``: frames ``(N T, C, H, W)`` of videos of ``t`` frames, or images (``t`` None)."""
        x = self.res(self.spatial(x))
        return x if t is None else _frames(self.time(_video(x, t)))[0]


class SpatialEncoder(nn.Module):
    """Frames -> the stage-1 latent at 1/8: three stages of [stride-2 5x5 conv, residual block,
    causal temporal conv], then a 3x3 conv to ``latent`` channels."""

    def __init__(self, widths: tuple[int, int, int], latent: int):
        super().__init__()
        w = (3, *widths)
        self.stages = nn.ModuleList(_Stage(w[i], w[i + 1]) for i in range(3))
        self.out = conv(widths[-1], latent, 3, 1)

    def forward(self, x: Tensor) -> Tensor:
        """An image batch ``(N, 3, H, W)`` or a video batch ``(N, 3, T, H, W)`` -> the same layout at 1/8."""
        video = x.ndim == 5
        x, t = _frames(x) if video else (x, None)
        for stage in self.stages:
            x = stage(x, t)
        x = self.out(x)
        return _video(x, t) if video else x


class SpatialDecoder(nn.Module):
    """The stage-1 latent -> frames: a 3x3 conv, then three stages of [residual block, causal
    temporal conv, stride-2 5x5 transposed conv]."""

    def __init__(self, widths: tuple[int, int, int], latent: int):
        super().__init__()
        self.inp = conv(latent, widths[2], 3, 1)
        chans, outs = widths[::-1], (widths[1], widths[0], 3)
        self.res = nn.ModuleList(ResBlock(c) for c in chans)
        self.time = nn.ModuleList(CausalTimeConv(c) for c in chans)
        self.up = nn.ModuleList(deconv(c, o) for c, o in zip(chans, outs, strict=True))

    def forward(self, y: Tensor) -> Tensor:
        video = y.ndim == 5
        x, t = _frames(y) if video else (y, None)
        x = self.inp(x)
        for i, (res, time, up) in enumerate(zip(self.res, self.time, self.up, strict=True)):
            x = res(x)
            if video:
                x = _frames(time(_video(x, t)))[0]
            x = up(x) if i == 2 else F.leaky_relu(up(x), 0.1)
        return _video(x, t) if video else x


class TextCrossAttention(nn.Module):
    """``x + out(attention(q(x), k(text), v(text)))``: the positions of a feature map ``(B, C, h,
    w)`` attend to text embeddings ``(B, L, text_dim)``; the output projection starts at zero."""

    def __init__(self, channels: int, text_dim: int, heads: int = 2):
        super().__init__()
        if channels % heads:
            raise ValueError(f"text cross-attention: {channels} channels do not split into {heads} heads")
        self.heads = heads
        self.norm = nn.LayerNorm(channels)
        self.q = nn.Linear(channels, channels)
        self.kv = nn.Linear(text_dim, 2 * channels)
        self.out = nn.Linear(channels, channels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, text: Tensor) -> Tensor:
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, hw, C)
        q = self.q(self.norm(tokens))
        k, v = self.kv(text.to(x.dtype)).chunk(2, dim=-1)

        def heads(z: Tensor) -> Tensor:
            return z.reshape(b, z.shape[1], self.heads, c // self.heads).transpose(1, 2)

        attended = F.scaled_dot_product_attention(heads(q), heads(k), heads(v))
        attended = attended.transpose(1, 2).reshape(b, h * w, c)
        return x + self.out(attended).transpose(1, 2).reshape(b, c, h, w)


class MotionEncoder(nn.Module):
    """Stage-1 latents of groups of :data:`GROUP` frames ``(B, Z, 4, h, w)`` -> one latent frame a
    group ``(B, M, h, w)``: a 3x3 conv to ``hidden`` channels, two stride-2 convolutions along
    time (kernel 2, inside the group), the optional text cross-attention, a 3x3 conv to ``M``."""

    def __init__(self, latent: int, hidden: int, text_dim: int = 0):
        super().__init__()
        self.inp = nn.Conv3d(latent, hidden, (1, 3, 3), padding=(0, 1, 1))
        self.down = nn.ModuleList(
            nn.Conv3d(hidden, hidden, (2, 3, 3), stride=(2, 1, 1), padding=(0, 1, 1)) for _ in range(2)
        )
        self.text = TextCrossAttention(hidden, text_dim) if text_dim else None
        self.out = conv(hidden, latent, 3, 1)

    def forward(self, s: Tensor, text: Tensor | None = None) -> Tensor:
        x = self.inp(s)
        for layer in self.down:
            x = layer(F.leaky_relu(x, 0.1))
        x = x[:, :, 0]
        if self.text is not None and text is not None:
            x = self.text(x, text)
        return self.out(F.leaky_relu(x, 0.1))


class MotionDecoder(nn.Module):
    """A group's decoded latent and the previous group's ``(B, 2 M, h, w)`` -> the group's stage-1
    latents ``(B, Z, 4, h, w)``: a 3x3 conv to ``hidden``, the optional text cross-attention, two
    stride-2 transposed convolutions along time, a 3x3 conv per frame to ``Z`` plus the group's
    latent (a residual: a static group needs no motion)."""

    def __init__(self, latent: int, hidden: int, text_dim: int = 0):
        super().__init__()
        self.inp = conv(2 * latent, hidden, 3, 1)
        self.text = TextCrossAttention(hidden, text_dim) if text_dim else None
        self.up = nn.ModuleList(
            nn.ConvTranspose3d(hidden, hidden, (2, 1, 1), stride=(2, 1, 1)) for _ in range(2)
        )
        self.mix = nn.ModuleList(nn.Conv3d(hidden, hidden, (1, 3, 3), padding=(0, 1, 1)) for _ in range(2))
        self.out = nn.Conv3d(hidden, latent, (1, 3, 3), padding=(0, 1, 1))

    def forward(self, y: Tensor, previous: Tensor, text: Tensor | None = None) -> Tensor:
        x = self.inp(torch.cat([y, previous], dim=1))
        if self.text is not None and text is not None:
            x = self.text(x, text)
        x = x[:, :, None]
        for up, mix in zip(self.up, self.mix, strict=True):
            x = mix(F.leaky_relu(up(F.leaky_relu(x, 0.1)), 0.1))
        return self.out(F.leaky_relu(x, 0.1)) + y[:, :, None]


def temporal_hyperprior(M: int, N: int) -> TemporalLatentCodec:
    """The latent codec of a temporal :class:`VideoVAE`: the mean-scale hyperprior's networks
    (:func:`~neurocodec.models.hyperprior.hyper_analysis`, the integer ``HyperSynthesis``) feeding a
    :class:`~neurocodec.models.context.TemporalPrior` (the latent frame before, and the frame's own
    checkerboard anchors) instead of being the entropy parameters themselves."""
    num_scales = len(tables.gaussian_scale_table())
    return TemporalLatentCodec(
        hyper_analysis(M, N), HyperSynthesis(N, M, num_scales=num_scales), TemporalPrior(M, num_scales), N
    )


class VideoVAE(CompressionModel):
    """The video VAE codec's network (module docstring). ``width``: the first spatial stage's
    channels (the three stages have ``width``, ``3 width / 2``, ``2 width``); ``latent``: channels of the stage-1 and of the coded latent (``M``); ``hidden``: the motion
    compressor's channels; ``hyper``: the hyper-latent's channels (``N``); ``text_dim``: the text
    embeddings' size (0: no text guidance module); ``text_model``: the text encoder the captions
    are embedded with (:mod:`neurocodec.text`; "" when the caller brings its own); ``temporal``:
    the latent coded with a temporal context (:func:`temporal_hyperprior`: each latent frame's
    entropy parameters see the one before) instead of the plain mean-scale hyperprior, which
    codes the latent frames apart."""

    downsampling = 32  # pixels are padded to a multiple of this (8x8, then the hyperprior's 4x4)
    latent_stride = 8

    def __init__(
        self,
        width: int = 32,
        latent: int = 16,
        hidden: int = 64,
        hyper: int = 32,
        text_dim: int = 0,
        temporal: bool = False,
        text_model: str = "",
    ):
        super().__init__()
        if min(width, latent, hidden, hyper) < 2 or text_dim < 0 or hidden % 2:
            raise ValueError(
                f"video-vae: width, latent, hidden (even), hyper must be at least 2 and text_dim >= 0, not "
                f"{width}, {latent}, {hidden}, {hyper}, {text_dim}"
            )
        if text_model and TEXT_MODELS.get(text_model) != text_dim:
            raise ValueError(
                f"video-vae: the text model {text_model!r} gives embeddings of {TEXT_MODELS.get(text_model)} "
                f"values (known: {TEXT_MODELS}), not text_dim {text_dim}"
            )
        self.text_model = text_model
        widths = (width, width * 3 // 2, 2 * width)
        self.widths, self.M, self.N, self.text_dim = widths, latent, hyper, text_dim
        self.encoder = SpatialEncoder(widths, latent)
        self.decoder = SpatialDecoder(widths, latent)
        self.motion_encoder = MotionEncoder(latent, hidden, text_dim)
        self.motion_decoder = MotionDecoder(latent, hidden, text_dim)
        self.temporal = bool(temporal)
        self.latent_codec = (
            temporal_hyperprior(latent, hyper) if temporal else mean_scale_hyperprior(latent, hyper)
        )

    def codec_layout(self, y: Tensor, videos: int) -> Tensor:
        """The latent ``(videos G, M, h, w)`` (group-major, as :meth:`analysis` gives it) as the
        latent codec takes it: unchanged for the plain hyperprior, ``(videos, M, G, h, w)`` for
        the temporal one."""
        return unfold(y, videos) if self.temporal else y

    def model_layout(self, y_hat: Tensor) -> Tensor:
        """The inverse of :meth:`codec_layout`."""
        return fold(y_hat) if self.temporal else y_hat

    # -- the transforms -------------------------------------------------------------------------

    def analysis(self, x: Tensor, text: Tensor | None = None) -> Tensor:
        """The latent to code: an image batch ``(N, 3, H, W)`` -> ``(N, M, H/8, W/8)``; a video
        batch ``(N, 3, 4G, H, W)`` -> ``(N G, M, H/8, W/8)``, group-major per video."""
        s = self.encoder(x)
        if x.ndim == 4:
            return s
        n, z, t, h, w = s.shape
        if t % GROUP:
            raise ValueError(f"video-vae codes groups of {GROUP} frames, not {t} frames")
        g = t // GROUP
        groups = s.reshape(n, z, g, GROUP, h, w).transpose(1, 2).reshape(n * g, z, GROUP, h, w)
        return self.motion_encoder(groups, None if text is None else text.repeat_interleave(g, 0))

    def analysis_groups(self, x: Tensor, text: Tensor | None = None) -> Tensor:
        """:meth:`analysis` of one video ``(1, 3, 4G, H, W)``, group by group: the encoder's
        temporal convolutions carry their state from one group to the next, so the latent is the
        one a pass over the whole video gives, in the memory of one group's activations."""
        if x.shape[0] != 1 or x.shape[2] % GROUP:
            raise ValueError(f"analysis_groups takes one video of groups of {GROUP} frames")
        with streaming(self.encoder):
            return torch.cat(
                [self.analysis(x[:, :, i : i + GROUP], text) for i in range(0, x.shape[2], GROUP)]
            )

    def synthesis(self, y_hat: Tensor, videos: int | None, text: Tensor | None = None) -> Tensor:
        """Frames from decoded latents: ``videos`` None for images ``(N, M, h, w)``; else ``y_hat``
        is ``(videos G, M, h, w)`` (group-major) and the result ``(videos, 3, 4G, 8h, 8w)``."""
        if videos is None:
            return self.decoder(y_hat)
        ng, m, h, w = y_hat.shape
        g = ng // videos
        groups = y_hat.reshape(videos, g, m, h, w)
        previous = torch.cat([torch.zeros_like(groups[:, :1]), groups[:, :-1]], dim=1)
        if text is not None:
            text = text.repeat_interleave(g, 0)
        s = self.motion_decoder(y_hat, previous.reshape(ng, m, h, w), text)  # (N G, Z, 4, h, w)
        s = s.reshape(videos, g, m, GROUP, h, w).transpose(1, 2).reshape(videos, m, g * GROUP, h, w)
        return self.decoder(s)

    def decode_groups(self, y_hat: Tensor, text: Tensor | None = None) -> Iterator[Tensor]:
        """The frames of one video, group by group: ``y_hat`` ``(G, M, h, w)`` -> ``G`` tensors
        ``(1, 3, 4, 8h, 8w)``, each computed from the latents of its group and the one before and
        from the temporal convolutions' state (the same frames as :meth:`synthesis`)."""
        previous = torch.zeros_like(y_hat[:1])
        with streaming(self.decoder):
            for g in range(y_hat.shape[0]):
                s = self.motion_decoder(y_hat[g : g + 1], previous, text)
                previous = y_hat[g : g + 1]
                yield self.decoder(s)

    # -- training -------------------------------------------------------------------------------

    def forward(self, x: Tensor, text: Tensor | None = None, mode: Mode | None = None) -> dict:
        """Training pass on images ``(N, 3, H, W)`` or videos ``(N, 3, 4G, H, W)`` (sides multiples
        of 32): ``{"x_hat", "likelihoods"}``; ``text`` ``(N, L, text_dim)`` when guided."""
        y = self.analysis(x, text)
        y_hat, likelihoods = self.latent_codec(self.codec_layout(y, x.shape[0]), None, mode)
        videos = None if x.ndim == 4 else x.shape[0]
        return {"x_hat": self.synthesis(self.model_layout(y_hat), videos, text), "likelihoods": likelihoods}
