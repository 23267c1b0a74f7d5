"""Conventional image codecs through Pillow, as anchors for rate-distortion comparisons.

Each codec is a function ``(image, setting) -> (bytes, decoded)``: ``image`` is a float tensor
``(C, H, W)`` in ``[0, 1]`` (grey is coded as RGB) or a PIL image, ``setting`` the codec's one
rate knob, ``bytes`` the complete file Pillow writes and ``decoded`` that file decoded again,
as an RGB float tensor ``(3, H, W)`` on the 8-bit grid. Nothing is written to disk.

=============  ================================================================  ================
name           encoder (Pillow 13 options)                                       setting
=============  ================================================================  ================
``jpeg``       libjpeg(-turbo), 4:2:0, standard Huffman tables (as CompressAI)   ``quality``
``jpeg-444``   the same with 4:4:4 (no chroma subsampling)                       ``quality``
``webp``       libwebp, lossy, ``method=6`` (slowest, best)                      ``quality``
``avif``       libavif + libaom, ``speed=4``, ``subsampling="4:4:4"``, 1 thread  ``quality``
``jpeg2000``   OpenJPEG, ``irreversible=True`` (9/7 wavelet), ``mct=1`` (RGB ->  ``ratio``
               YCbCr), one layer at ``quality_layers=[ratio]``, raw codestream
=============  ================================================================  ================

:data:`BASELINES` maps the names to :class:`Baseline` entries holding the encoder and a default
sweep of settings that spans about 0.1-2 bpp on Kodak, from low to high rate.
:func:`evaluate_baseline` measures a sweep on image files with the same rows as
:func:`neurocodec.rd.evaluate_images` (bpp from the length of the file, PSNR of the 8-bit
decoded RGB against the original).

JPEG 2000's setting is OpenJPEG's compression ratio against the uncompressed 8-bit samples,
so a file takes about ``24 / ratio`` bpp for RGB; its sweep therefore goes from high ratios to
low ones. AVIF is limited to one encoder thread so that its encode times compare with the
single-threaded JPEG and WebP encoders (the bitstream is the same with more threads).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, features

from neurocodec.io.image import read_image
from neurocodec.metrics import quantized
from neurocodec.rd import rd_row

__all__ = [
    "BASELINES",
    "Baseline",
    "avif",
    "decode_image",
    "evaluate_baseline",
    "jpeg",
    "jpeg444",
    "jpeg2000",
    "versions",
    "webp",
]

ImageLike = torch.Tensor | Image.Image


def to_pil(image: ImageLike) -> Image.Image:
    """An 8-bit RGB PIL image of a ``(C, H, W)`` tensor in ``[0, 1]`` (rounded) or of a PIL image."""
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    x = image.detach().float().cpu()
    if x.dim() == 4 and x.shape[0] == 1:
        x = x[0]
    if x.dim() != 3 or x.shape[0] not in (1, 3):
        raise ValueError(f"expected an image tensor (C, H, W) with 1 or 3 channels, got {tuple(x.shape)}")
    x = x.expand(3, -1, -1)
    pixels = quantized(x).mul(255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    return Image.fromarray(pixels, "RGB")


def decode_image(data: bytes) -> torch.Tensor:
    """The RGB float tensor ``(3, H, W)`` in ``[0, 1]`` of an encoded image file (any Pillow format)."""
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        rgb = im.convert("RGB")
    return torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1).float().div(255)


def _save(image: Image.Image, format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def _encode_jpeg(image: Image.Image, quality: float, subsampling: str = "4:2:0") -> bytes:
    return _save(image, "JPEG", quality=int(quality), subsampling=subsampling)


def _encode_jpeg444(image: Image.Image, quality: float) -> bytes:
    return _encode_jpeg(image, quality, "4:4:4")


def _encode_webp(image: Image.Image, quality: float) -> bytes:
    return _save(image, "WEBP", quality=float(quality), method=6, lossless=False)


def _encode_avif(image: Image.Image, quality: float) -> bytes:
    return _save(image, "AVIF", quality=int(quality), speed=4, subsampling="4:4:4", max_threads=1)


def _encode_jpeg2000(image: Image.Image, ratio: float) -> bytes:
    return _save(
        image,
        "JPEG2000",
        irreversible=True,
        mct=1,
        quality_mode="rates",
        quality_layers=[float(ratio)],
        no_jp2=True,
    )


@dataclass(frozen=True)
class Baseline:
    """A conventional codec: its encoder ``(PIL RGB image, setting) -> bytes``, the name of its
    setting, a default sweep (low to high rate) and a description (with the library versions)."""

    name: str
    encoder: Callable[[Image.Image, float], bytes]
    setting: str
    sweep: tuple[float, ...]
    description: str
    feature: str  # the PIL.features name of the library it needs

    @property
    def available(self) -> bool:
        """Whether this Pillow was built with the codec (AVIF needs Pillow >= 11.3)."""
        return bool(features.check(self.feature))

    def encode(self, image: ImageLike, setting: float) -> bytes:
        return self.encoder(to_pil(image), setting)

    def __call__(self, image: ImageLike, setting: float) -> tuple[bytes, torch.Tensor]:
        data = self.encode(image, setting)
        return data, decode_image(data)


def versions() -> dict[str, str | None]:
    """Pillow's version and those of the codec libraries it was built with (None: not built in)."""
    libs = {
        "libjpeg": "jpg",
        "libjpeg_turbo": "libjpeg_turbo",
        "libwebp": "webp",
        "libavif": "avif",
        "openjpeg": "jpg_2000",
    }
    found = {name: features.version(key) for name, key in libs.items()}
    return {"pillow": Image.__version__, **found}


def _describe(what: str, library: str) -> str:
    return f"{what}. Pillow {Image.__version__}, {library} {versions()[library] or '(not built in)'}"


BASELINES: dict[str, Baseline] = {
    "jpeg": Baseline(
        "jpeg",
        _encode_jpeg,
        "quality",
        (5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 85, 90, 95),
        _describe("JPEG 4:2:0, quality", "libjpeg_turbo"),
        "jpg",
    ),
    "jpeg-444": Baseline(
        "jpeg-444",
        _encode_jpeg444,
        "quality",
        (5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 85, 90, 95),
        _describe("JPEG 4:4:4, quality", "libjpeg_turbo"),
        "jpg",
    ),
    "webp": Baseline(
        "webp",
        _encode_webp,
        "quality",
        (0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 85, 90, 95),
        _describe("WebP lossy, method 6, quality", "libwebp"),
        "webp",
    ),
    "avif": Baseline(
        "avif",
        _encode_avif,
        "quality",
        (10, 20, 30, 40, 50, 60, 65, 70, 75, 80, 85, 90),
        _describe("AVIF (libaom), speed 4, 4:4:4, quality", "libavif"),
        "avif",
    ),
    "jpeg2000": Baseline(
        "jpeg2000",
        _encode_jpeg2000,
        "ratio",
        (240, 160, 120, 96, 80, 64, 48, 40, 32, 24, 18, 14, 12, 10),
        _describe("JPEG 2000 (9/7 irreversible, MCT), codestream, compression ratio", "openjpeg"),
        "jpg_2000",
    ),
}


def _function(name: str, doc: str) -> Callable[[ImageLike, float], tuple[bytes, torch.Tensor]]:
    baseline = BASELINES[name]

    def code(image: ImageLike, setting: float) -> tuple[bytes, torch.Tensor]:
        return baseline(image, setting)

    code.__name__ = code.__qualname__ = name.replace("-", "")
    code.__doc__ = doc
    return code


jpeg = _function("jpeg", "``(image, quality 0..95) -> (bytes, decoded)``: JPEG 4:2:0 through Pillow.")
jpeg444 = _function("jpeg-444", "``(image, quality 0..95) -> (bytes, decoded)``: JPEG 4:4:4 through Pillow.")
webp = _function("webp", "``(image, quality 0..100) -> (bytes, decoded)``: lossy WebP, method 6.")
avif = _function("avif", "``(image, quality 0..100) -> (bytes, decoded)``: AVIF, speed 4, 4:4:4.")
jpeg2000 = _function(
    "jpeg2000", "``(image, ratio) -> (bytes, decoded)``: JPEG 2000, 9/7 irreversible, ``ratio``:1."
)


def evaluate_baseline(
    name: str, paths: Sequence[str | Path], settings: Sequence[float] | None = None
) -> list[dict]:
    """Rows of :func:`neurocodec.rd.evaluate_images` (``file``, ``bytes``, ``bpp``, ``psnr``,
    ``encode_s``, ``decode_s``) plus ``setting``, for each file and each setting (default: the
    codec's sweep), file by file. Raises KeyError for an unknown ``name``."""
    baseline = BASELINES[name]
    settings = baseline.sweep if settings is None else tuple(settings)
    rows = []
    for path in paths:
        x, _ = read_image(path)
        x = x.expand(3, -1, -1)
        image = to_pil(x)
        for setting in settings:
            t0 = time.perf_counter()
            data = baseline.encoder(image, setting)
            t1 = time.perf_counter()
            x_hat = decode_image(data)
            t2 = time.perf_counter()
            rows.append({**rd_row(path, x, data, x_hat, t1 - t0, t2 - t1), "setting": setting})
    return rows
