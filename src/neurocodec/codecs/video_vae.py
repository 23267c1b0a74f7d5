"""``video-vae``: a learned video codec after the cross-modal video VAE of Xing et al. (arXiv
2412.17805): the 2+1-D spatial autoencoder and the motion compressor of
:mod:`neurocodec.models.video_vae` (4x8x8: one latent frame of ``M`` channels at 1/8 of the frame
for every group of 4 frames), the latent coded with the mean-scale hyperprior
(:class:`~neurocodec.entropy.latent_codecs.HyperpriorLatentCodec`, every latent group an image
latent of the batch). A one-frame video is coded as an image: it bypasses the temporal layers.
One set of weights a quality (each trained for one lambda); the architecture comes with the
weights (model card), which the file names by their hash.

**Byte format.** The container (docs/bitstream.md) with the codec name ``video-vae`` and sections:

- ``header`` (2 bytes): ``version`` (1), ``flags`` (bit 0: text guidance was used; the other bits 0;
  a one-frame video is never text-guided);
- ``text`` (only when flag bit 0 is set): the caption the latents were guided by, UTF-8, 1 to
  :data:`MAX_TEXT_BYTES` bytes. It travels in the file because the decoder's motion decoder
  attends to its embedding too; a decoder needs the text encoder the weights were trained with
  (``codec.text_encoder``);
- ``z``, ``y``: the latent codec's two rANS streams, for the latent ``(G, M, h, w)``:
  ``G = ceil(T / 4)`` groups (1 for a one-frame video), ``h, w`` = 1/8 of the frame padded to a
  multiple of 32; ``z`` is ``(G, N, h/4, w/4)`` with the factorized prior. With the plain
  hyperprior, ``y`` is the Gaussian conditional whose table index and mean of every element come
  from the integer ``h_s`` of ``z`` alone. With weights of ``temporal`` architecture
  (:class:`~neurocodec.entropy.latent_codecs.TemporalLatentCodec`), ``y`` codes the groups in
  order, each as its checkerboard anchors then the rest, with indexes and means from an integer
  prior over the group's ``h_s`` output, the decoded group before it and its decoded anchors.
  Either way exact on every device and thread count; the weights (named in the header by their
  hash) say which.

**Decoding** reads both streams, then synthesizes the video group by group: group ``g``'s four
frames from its latent, group ``g - 1``'s latent and the causal temporal convolutions' state
(:meth:`~neurocodec.models.video_vae.VideoVAE.decode_groups`). Frames are padded (replicate) to a
multiple of 32 and the last group by repeating the last frame; the decoder crops. The float
synthesis is rounded to the grid of the file's bit depth, so its last-bit differences between
thread counts vanish but for rare ties (tested on 1 and 2 threads).

**Colour.** The network codes RGB. Y, Cb, Cr planes (``colour`` "yuv4xx") are mapped to RGB by the
BT.601 limited-range matrix without clamping before encoding and mapped back after decoding (an
exact linear inverse), so the file's planes come back as planes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from neurocodec import container
from neurocodec.codecs.base import Codec, blocks, pad_to_multiple
from neurocodec.container import Header, VideoGeometry
from neurocodec.errors import BitstreamError, ConfigError
from neurocodec.models.video_vae import GROUP, VideoVAE
from neurocodec.registry import register_codec
from neurocodec.text import text_encoder

__all__ = ["MAX_TEXT_BYTES", "VideoVAECodec", "rgb_to_ycbcr", "ycbcr_to_rgb"]

VERSION = 1
TEXT_FLAG = 1
MAX_TEXT_BYTES = 1024

# BT.601, limited range: [Y, Cb, Cr] - offset = _TO_YCBCR @ [R, G, B]
_TO_YCBCR = (
    torch.tensor(
        [
            [0.299 * 219, 0.587 * 219, 0.114 * 219],
            [-0.299 / 1.772 * 224, -0.587 / 1.772 * 224, (1 - 0.114) / 1.772 * 224],
            [(1 - 0.299) / 1.402 * 224, -0.587 / 1.402 * 224, -0.114 / 1.402 * 224],
        ],
        dtype=torch.float64,
    )
    / 255
)
_OFFSET = torch.tensor([16, 128, 128], dtype=torch.float64) / 255


def _channel_map(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """``matrix @ x`` over the channels (dimension 1) of ``(N, 3, ...)``."""
    return torch.einsum("ij,nj...->ni...", matrix.to(x), x)


def rgb_to_ycbcr(x: torch.Tensor) -> torch.Tensor:
    """RGB ``(N, 3, ...)`` -> BT.601 limited-range Y, Cb, Cr in [0, 1] units, unclamped."""
    return _channel_map(x, _TO_YCBCR) + _OFFSET.to(x).view(1, 3, *([1] * (x.ndim - 2)))


def ycbcr_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """The exact inverse of :func:`rgb_to_ycbcr` (unclamped)."""
    return _channel_map(x - _OFFSET.to(x).view(1, 3, *([1] * (x.ndim - 2))), torch.linalg.inv(_TO_YCBCR))


@register_codec(model=VideoVAE, arch={"width": 32, "latent": 16, "hidden": 64, "hyper": 32}, priority=-2)
class VideoVAECodec(Codec):
    """The video VAE as a codec. ``text`` (a caption, or None) guides the next encodes when the
    weights have the text module; ``text_encoder`` (``str -> (L, text_dim)`` tensor) embeds it, at
    encoding and at decoding: by default the encoder the weights name (``text_model``,
    :mod:`neurocodec.text`; ``pip install 'neurocodec[text]'``)."""

    name = "video-vae"
    media = "video"
    channels = (3,)

    def __init__(
        self,
        width: int = 32,
        latent: int = 16,
        hidden: int = 64,
        hyper: int = 32,
        text_dim: int = 0,
        temporal: bool = False,
        text_model: str = "",
        *,
        quality: int = 0,
        weights_hash: bytes = bytes(container.WEIGHTS_HASH_BYTES),
    ):
        super().__init__(quality, weights_hash)
        try:
            self.model = VideoVAE(width, latent, hidden, hyper, text_dim, temporal, text_model)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        self.text: str | None = None
        self.text_encoder: Callable[[str], torch.Tensor] | None = None

    # -- text -------------------------------------------------------------------------------------

    def _embedding(self, text: str) -> torch.Tensor:
        """``(1, L, text_dim)``: the text encoder's embedding of ``text``."""
        if self.model.text_dim == 0:
            raise ConfigError("video-vae: these weights have no text guidance; set codec.text = None")
        if self.text_encoder is None and self.model.text_model:
            self.text_encoder = text_encoder(self.model.text_model)  # ConfigError when not installed
        if self.text_encoder is None:
            raise ConfigError(
                "video-vae: these weights name no text model: set codec.text_encoder (the text encoder they were trained with)"
            )
        e = torch.as_tensor(self.text_encoder(text), dtype=torch.float32, device=self.device)
        if e.ndim != 2 or e.shape[1] != self.model.text_dim or e.shape[0] < 1:
            raise ConfigError(
                f"video-vae: the text encoder gave a tensor of shape {tuple(e.shape)}, not (L, {self.model.text_dim})"
            )
        return e[None]

    # -- encoding ---------------------------------------------------------------------------------

    def _encode(self, x: torch.Tensor, colour: str = "rgb") -> tuple[VideoGeometry, dict[str, bytes]]:
        _, c, t, h, w = x.shape
        m = self.model
        if colour != "rgb":
            x = ycbcr_to_rgb(x)
        sections: dict[str, bytes] = {}
        embedding = None
        if self.text is not None and t > 1:  # a one-frame video has no motion compressor to guide
            text = self.text.encode("utf-8")
            if not 1 <= len(text) <= MAX_TEXT_BYTES:
                raise ConfigError(
                    f"video-vae: a caption has 1 to {MAX_TEXT_BYTES} bytes of UTF-8, not {len(text)}"
                )
            embedding = self._embedding(self.text)
        sections["header"] = bytes([VERSION, TEXT_FLAG if embedding is not None else 0])
        if embedding is not None:
            sections["text"] = text
        if t == 1:  # an image: no temporal layers
            y = m.analysis(pad_to_multiple(x[:, :, 0], m.downsampling))
        else:
            s = m.downsampling
            x = torch.nn.functional.pad(x, (0, -w % s, 0, -h % s, 0, -t % GROUP), mode="replicate")
            y = m.analysis_groups(x, embedding)  # a group's activations at a time
        sections.update(m.latent_codec.compress(m.codec_layout(y.contiguous(), 1)))
        return VideoGeometry(t, 25, 1, height=h, width=w, channels=c, bit_depth=8), sections

    # -- decoding ---------------------------------------------------------------------------------

    def latent_shape(self, geometry: VideoGeometry) -> tuple[int, ...]:
        """The shape of the coded latent of a video of ``geometry`` as the latent codec takes it:
        ``(G, M, h, w)``, or ``(1, M, G, h, w)`` with the temporal context (``G`` is 1 for a
        one-frame video)."""
        m = self.model
        rows, cols = blocks((geometry.height, geometry.width), m.downsampling)
        step = m.downsampling // m.latent_stride
        groups = -(-geometry.frames // GROUP)
        if m.temporal:
            return (1, m.M, groups, rows * step, cols * step)
        return (groups, m.M, rows * step, cols * step)

    def _decode(self, header: Header, sections: dict[str, bytes]) -> torch.Tensor:
        m = self.model
        if "header" not in sections:
            raise BitstreamError("this video-vae file lacks its header section")
        m.latent_codec.check_sections(sections, "this video-vae file")
        head = sections["header"]
        if len(head) != 2 or head[0] != VERSION:
            raise BitstreamError(
                f"video-vae header section {head[:2].hex()} ({len(head)} bytes): this decoder reads version {VERSION}"
            )
        if head[1] & ~TEXT_FLAG:
            raise BitstreamError(f"video-vae header flags {head[1]:#04x}: unknown bits are set")
        embedding = None
        if head[1] & TEXT_FLAG:
            text = sections.get("text", b"")
            if not 1 <= len(text) <= MAX_TEXT_BYTES:
                raise BitstreamError(
                    f"the video-vae text section has {len(text)} bytes, not 1..{MAX_TEXT_BYTES}"
                )
            if m.text_dim == 0:
                raise BitstreamError(
                    "this video-vae file says text guidance, which these weights do not have"
                )
            try:
                caption = text.decode("utf-8")
            except UnicodeDecodeError:
                raise BitstreamError("the video-vae text section is not UTF-8") from None
            embedding = self._embedding(caption)
        elif "text" in sections:
            raise BitstreamError("this video-vae file has a text section but its header says no text")
        geo = header.geometry
        y_hat = m.latent_codec.decompress(sections, self.latent_shape(geo))
        y_hat = m.model_layout(y_hat).to(self.device, torch.float32)
        if geo.frames == 1:
            x = m.synthesis(y_hat, None)[:, :, None]
        else:
            x = torch.cat(list(m.decode_groups(y_hat, embedding)), dim=2)
        x = x[:, :, : geo.frames, : geo.height, : geo.width]
        if geo.colour != "rgb":
            x = rgb_to_ycbcr(x)
        peak = 2**geo.bit_depth - 1
        return x.clamp(0, 1).mul(peak).round().div(peak)
