"""The codec API every codec family implements: a tensor in, a complete neurocodec file out.

A codec is a :class:`torch.nn.Module` with a registry ``name``, a ``media`` type, a ``quality``
and the hash of the weights it was loaded with. :meth:`Codec.encode` and :meth:`Codec.decode`
are written once, here: they check the input tensor, write and read the container
(:mod:`neurocodec.container`) and refuse a file made by another codec, quality or weights.
A codec family implements three hooks:

- ``_encode(x) -> (geometry, sections)``: ``x`` is float32 with a batch dimension of one, on
  the codec's device, already checked; pad it as the networks need (the geometry records
  the true size). A family with ``adaptive = True`` also takes ``_encode(x, effort=N)``, N > 0:
  N iterations of encoder-side adaptation of its latents (:mod:`neurocodec.codecs.adapt`).
  A video family's ``_encode`` also takes ``colour``: what the channels are ("rgb", or Y, Cb,
  Cr planes: "yuv420", ...), so that it may weight them as the metric does (PSNR-YUV 6:1:1);
- ``_decode(header, sections) -> tensor``: the reconstruction, padded or not (it is cropped
  to the header's geometry here) and with or without the batch dimension of one;
- ``from_weights(config, state, device)``: the codec built from a weight config and its
  tensors (:func:`neurocodec.registry.load` calls it and stamps ``quality`` and
  ``weights_hash``).
"""

from __future__ import annotations

import abc
import dataclasses
import sys
from collections.abc import Iterable
from fractions import Fraction
from typing import TYPE_CHECKING, ClassVar

import torch
from tqdm import tqdm

from neurocodec import container
from neurocodec.container import (
    DEFAULT_LIMITS,
    AudioGeometry,
    Geometry,
    Header,
    ImageGeometry,
    Limits,
    VideoGeometry,
)
from neurocodec.errors import ConfigError, ContainerError, UnsupportedMediaError, WrongCodecError

if TYPE_CHECKING:
    from neurocodec.registry import WeightConfig

# Dimensions of one input without the batch dimension, and the range of its samples.
_LAYOUTS = {"image": "(C, H, W)", "audio": "(C, T)", "video": "(C, T, H, W)"}
_RANGES = {"image": (0.0, 1.0), "audio": (-1.0, 1.0), "video": (0.0, 1.0)}


def blocks(sizes: Iterable[int], step: int) -> tuple[int, ...]:
    """How many blocks of ``step`` cover each of ``sizes`` (a latent's size for a downsampling of ``step``)."""
    return tuple(-(-size // step) for size in sizes)


def _within(x: torch.Tensor, low: float, high: float) -> bool:
    """Whether every sample of ``x`` (not empty) is a number in ``[low, high]``: one pass,
    :func:`torch.aminmax`, whose extremes are NaN when any sample is (and NaN fails both bounds)."""
    lo, hi = (float(v) for v in torch.aminmax(x))
    return low <= lo and hi <= high


def pad_to_multiple(x: torch.Tensor, step: int, mode: str = "replicate") -> torch.Tensor:
    """``x`` (N, C, *S) padded after its end to a multiple of ``step`` along each side (the codec's
    padding; the decoder crops it away)."""
    pads = [p for size in reversed(x.shape[2:]) for p in (0, -size % step)]
    return torch.nn.functional.pad(x, pads, mode=mode) if any(pads) else x


def shape_of(geometry: Geometry) -> tuple[int, ...]:
    """The shape of the decoded tensor a file's geometry describes (no batch dimension)."""
    if isinstance(geometry, ImageGeometry):
        return geometry.channels, geometry.height, geometry.width
    if isinstance(geometry, AudioGeometry):
        return geometry.channels, geometry.samples
    return geometry.channels, geometry.frames, geometry.height, geometry.width


class Codec(torch.nn.Module, metaclass=abc.ABCMeta):
    """A learned codec: ``encode(tensor) -> bytes`` of a complete file, ``decode(bytes) -> tensor``.

    Class attributes: ``name`` (the registry name, written into every file), ``media``
    ("image", "audio" or "video"), ``channels`` (the channel counts it codes),
    ``default_quality`` (the quality :func:`neurocodec.load` picks when none is given; None:
    the middle of the shipped ones), for audio ``sample_rate`` (the rate in Hz a file
    records when :meth:`encode` is not told one: the rate the codec was trained at),
    ``adaptive`` (whether :meth:`encode` takes an ``effort``) and ``presets`` (names of efforts,
    such as ``{"fast": 1000, ...}``, that :meth:`encode` takes for ``effort``).

    ``lmbda`` is the rate-distortion trade-off its weights were trained for (``lambda * 255^2 *
    MSE + bpp``, from the model card; None when unknown), which ``effort`` optimizes.
    """

    name: ClassVar[str]
    media: ClassVar[str]
    channels: ClassVar[tuple[int, ...]] = (3,)
    default_quality: ClassVar[int | None] = None
    sample_rate: ClassVar[int | None] = None
    adaptive: ClassVar[bool] = False
    presets: ClassVar[dict[str, int]] = {}

    def __init__(self, quality: int = 0, weights_hash: bytes = bytes(container.WEIGHTS_HASH_BYTES)) -> None:
        super().__init__()
        self.quality = quality
        self.weights_hash = weights_hash
        self.lmbda: float | None = None
        # Moves with .to(), so ``device`` is right for codecs with and without parameters.
        self.register_buffer("_device_anchor", torch.empty(0), persistent=False)

    @property
    def device(self) -> torch.device:
        return self._device_anchor.device

    # ----------------------------------------------------------------------------------------
    # Hooks of a codec family

    @classmethod
    def from_weights(
        cls, config: WeightConfig, state: dict[str, torch.Tensor], device: torch.device
    ) -> Codec:
        """The codec of ``config`` (its ``arch`` holds the constructor arguments) with ``state`` loaded
        into its ``model`` (the nn.Module whose state_dict the weight file holds), in eval mode.
        A family whose weights are laid out otherwise overrides this."""
        codec = cls(**config.arch)
        codec.model.load_state_dict(state)
        return codec.to(device).eval()

    @abc.abstractmethod
    def _encode(self, x: torch.Tensor) -> tuple[Geometry, dict[str, bytes]]:
        """The geometry of ``x`` (batch of one, checked, on the device) and the sections coding it."""

    @abc.abstractmethod
    def _decode(self, header: Header, sections: dict[str, bytes]) -> torch.Tensor:
        """The reconstruction of a file of this codec, quality and weights (padding allowed)."""

    # ----------------------------------------------------------------------------------------
    # The API

    def encode(
        self,
        x: torch.Tensor,
        sample_rate: int | None = None,
        effort: int = 0,
        *,
        frame_rate: int | Fraction | tuple[int, int] | None = None,
        colour: str = "rgb",
        full_range: bool = False,
        bit_depth: int = 8,
    ) -> bytes:
        """The bytes of a complete neurocodec file coding ``x``.

        ``x`` is one input without a batch dimension or with one of size 1: an image
        ``(C, H, W)`` and a video ``(C, T, H, W)`` with samples in ``[0, 1]``, audio ``(C, T)``
        in ``[-1, 1]``, of a floating dtype, on any device. Any size within the container's
        limits: the codec pads internally and the decoder crops. ``sample_rate`` (audio only)
        is the rate in Hz the file records; by default the codec's ``sample_rate``.

        Video only, what the file records for a decoder to write the video back
        (:class:`~neurocodec.container.VideoGeometry`): ``frame_rate`` (frames per second, an
        int, a Fraction or ``(num, den)``; default 25, as FFmpeg assumes for raw video);
        ``colour``: "rgb" (default), or "yuv444" / "yuv422" / "yuv420" when the channels are the
        Y, Cb, Cr planes at the frame's size of a video of that chroma format
        (:func:`neurocodec.io.video.planes_to_tensor`; ``neurocodec.io.read_codec_input`` gives
        a file's video this way, with no RGB round trip); ``full_range`` (YCbCr codes span the
        full range) and ``bit_depth`` (of the source's samples).

        ``effort`` (``adaptive`` codecs with a known ``lmbda``): that many iterations of
        encoder-side adaptation of the latents to ``x`` (:mod:`neurocodec.codecs.adapt`), for a
        better rate-distortion trade-off at the same decoding cost; each iteration costs about a
        synthesis forward and backward pass. 0 (the default) codes the encoder's latents as they are.
        """
        x = self._checked(x, sample_rate)
        video = self._video_fields(x, frame_rate, colour, full_range, bit_depth)
        self.check_effort(effort)
        effort = self.resolve_effort(effort)
        with torch.inference_mode():
            # contiguous: the same pixels give the same file whatever their memory layout (a view,
            # channels-last, a permuted array): the layouts' float rounding differs in the networks
            x = x.to(self.device, torch.float32).contiguous().unsqueeze(0)
            hook = {"colour": colour} if self.media == "video" else {}
            if effort:
                hook["effort"] = effort
            geometry, sections = self._encode(x, **hook)
        if sample_rate is not None:
            geometry = dataclasses.replace(geometry, sample_rate=sample_rate)
        if video:
            geometry = dataclasses.replace(geometry, **video)
        header = Header(self.name, self.quality, self.weights_hash, geometry)
        return container.pack(header, sections)

    def decode(self, data: bytes | bytearray | memoryview, limits: Limits = DEFAULT_LIMITS) -> torch.Tensor:
        """The reconstruction coded in a file of this codec, without a batch dimension, on its device.

        ``limits``: the resource policy (:class:`~neurocodec.container.Limits`, by default
        ``container.DEFAULT_LIMITS``), checked against the header before anything is allocated.

        Raises :class:`~neurocodec.errors.ContainerError` for a damaged file
        (:class:`~neurocodec.errors.LimitError` for one beyond ``limits``),
        :class:`~neurocodec.errors.WrongCodecError` for a file of another codec, quality or
        weights, and :class:`~neurocodec.errors.BitstreamError` for corrupt streams.
        """
        header, sections = container.unpack(data, limits)
        self._check_header(header)
        with torch.inference_mode():
            y = self._decode(header, sections)
        shape = shape_of(header.geometry)
        if y.ndim == len(shape) + 1:
            y = y[0]
        y = y[tuple(slice(0, n) for n in shape)]
        if y.shape != shape:
            raise RuntimeError(
                f"{self.name} decoded a tensor of shape {tuple(y.shape)}, the file says {shape}"
            )
        return y.clamp(*_RANGES[self.media])

    def encode_batch(
        self, xs: Iterable[torch.Tensor], progress: bool = False, effort: int = 0
    ) -> list[bytes]:
        """:meth:`encode` of each input (a sequence of tensors, or one tensor with a batch dimension).

        The inputs may differ in size. ``progress`` shows a tqdm bar on stderr.
        """
        total = len(xs) if hasattr(xs, "__len__") else None
        bar = tqdm(xs, total=total, disable=not progress, file=sys.stderr, unit=self.media, desc=self.name)
        return [self.encode(x, effort=effort) for x in bar]

    # ----------------------------------------------------------------------------------------

    def _checked(self, x: torch.Tensor, sample_rate: int | None = None) -> torch.Tensor:
        """``x`` without its batch dimension, once it is an input this codec can code."""
        layout = _LAYOUTS[self.media]
        ndim = layout.count(",") + 1
        if not isinstance(x, torch.Tensor):
            raise UnsupportedMediaError(f"{self.name} encodes a torch.Tensor, not {type(x).__name__}")
        if x.ndim == ndim + 1 and x.shape[0] == 1:
            x = x[0]
        if x.ndim != ndim:
            raise UnsupportedMediaError(
                f"{self.name} encodes one {self.media} of shape {layout} (or a batch of one), "
                f"not a tensor of shape {tuple(x.shape)}; use encode_batch for several"
            )
        if not x.is_floating_point():
            raise UnsupportedMediaError(f"{self.name} encodes floating-point samples, not {x.dtype}")
        if x.shape[0] not in self.channels:
            raise UnsupportedMediaError(
                f"{self.name} codes {' or '.join(map(str, self.channels))} channels, not {x.shape[0]}"
            )
        if sample_rate is not None and self.media != "audio":
            raise UnsupportedMediaError(f"{self.name} codes {self.media}: it takes no sample_rate")
        # refuse an input beyond the container's limits before coding it
        if self.media == "audio":
            rate = sample_rate if sample_rate is not None else self.sample_rate
            AudioGeometry(sample_rate=rate or 1, channels=x.shape[0], samples=x.shape[-1])
        elif self.media == "video":
            VideoGeometry(
                x.shape[1], 1, 1, height=x.shape[2], width=x.shape[3], channels=x.shape[0], bit_depth=8
            )
        else:
            ImageGeometry(height=x.shape[-2], width=x.shape[-1], channels=x.shape[0], bit_depth=8)
        low, high = _RANGES[self.media]
        if x.numel() == 0 or not _within(x, low, high):
            raise UnsupportedMediaError(f"{self.name} encodes finite samples in [{low:g}, {high:g}]")
        return x

    def _video_fields(
        self, x: torch.Tensor, frame_rate: object, colour: str, full_range: bool, bit_depth: int
    ) -> dict:
        """The video geometry's fields :meth:`encode` was told (checked), or {} for other media."""
        if self.media != "video":
            if frame_rate is not None or (colour, full_range, bit_depth) != ("rgb", False, 8):
                raise UnsupportedMediaError(
                    f"{self.name} codes {self.media}: frame_rate, colour, full_range and bit_depth are for video"
                )
            return {}
        from neurocodec.io.video import frame_rate as checked_rate

        try:
            rate = checked_rate(25 if frame_rate is None else frame_rate)
            fields = {
                "rate_num": rate.numerator, "rate_den": rate.denominator, "colour": colour,
                "full_range": full_range, "bit_depth": bit_depth,
            }  # fmt: skip
            VideoGeometry(x.shape[1], height=x.shape[2], width=x.shape[3], channels=x.shape[0], **fields)
        except (ValueError, TypeError) as e:  # GeometryError is a ValueError
            raise ConfigError(f"{self.name}: {e}") from None
        return fields

    def resolve_effort(self, effort: int | str) -> int:
        """``effort`` as a number of iterations: one of this codec's :attr:`presets` by name, or the number."""
        if not isinstance(effort, str):
            return effort
        if effort not in self.presets:
            known = (
                f"its presets are {', '.join(self.presets)}"
                if self.presets
                else "give a number of iterations"
            )
            raise ConfigError(f"{self.name} has no effort preset {effort!r}: {known}")
        return self.presets[effort]

    def check_effort(self, effort: int | str) -> None:
        """Raise :class:`~neurocodec.errors.ConfigError` unless :meth:`encode` can take ``effort``
        (a number of iterations, or the name of one of the codec's :attr:`presets`)."""
        effort = self.resolve_effort(effort)
        if isinstance(effort, bool) or not isinstance(effort, int) or effort < 0:
            raise ConfigError(f"effort must be a whole number of iterations >= 0, not {effort!r}")
        if effort and not self.adaptive:
            raise ConfigError(f"{self.name} has no encoder-side adaptation: use effort 0")
        if effort and self.lmbda is None:
            raise ConfigError(
                f"{self.name} quality {self.quality} does not know the lambda of its weights (trained "
                "for MSE), which effort optimizes: set codec.lmbda"
            )

    def _check_header(self, header: Header) -> None:
        g = header.geometry
        media = container.media_of(g)
        if media != self.media or g.channels not in self.channels:
            # a header no writer of this codec makes (found by fuzzing: it reached the codec's
            # decoding as an AttributeError, or decoded a silently cropped tensor)
            raise ContainerError(
                f"malformed neurocodec file: {self.name} codes {' or '.join(map(str, self.channels))}-channel "
                f"{self.media}, but the file holds {g.channels}-channel {media}"
            )
        needs = f"codec {header.codec!r} quality {header.quality} (weights {header.weights_hash.hex()})"
        has = f"{self.name!r} quality {self.quality} (weights {self.weights_hash.hex()})"
        if (header.codec, header.quality, header.weights_hash) != (
            self.name,
            self.quality,
            self.weights_hash,
        ):
            raise WrongCodecError(
                f"this file needs {needs}, not {has}; neurocodec.decode(data) loads the right codec"
            )
