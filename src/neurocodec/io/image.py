"""Still images in and out: PNG, JPEG, WebP, TIFF and PPM/PGM files <-> float tensors.

A tensor is float32 ``(C, H, W)`` in ``[0, 1]``, grey (``C = 1``) or RGB (``C = 3``), from
8- or 16-bit samples. Reading goes through Pillow: palette and CMYK/YCbCr images become RGB,
the EXIF orientation is applied, and the size is checked against the container's limits
before any pixel is decoded. Pillow has no 16-bit colour mode (it silently reduces 16-bit RGB
to 8 bits), so 16-bit colour PNGs are decoded by torchvision and written by :func:`_png_rgb16`.
Alpha is not coded: an image with transparency is refused unless ``drop_alpha=True``.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import ExifTags, Image, UnidentifiedImageError
from torchvision.io import ImageReadMode, decode_png, read_file

from neurocodec.container import ImageGeometry
from neurocodec.errors import (
    GeometryError,
    MediaReadError,
    NeurocodecError,
    UnsupportedMediaError,
)
from neurocodec.io.atomic import write_atomic

READ_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF", "PPM")
WRITE_FORMATS = {
    ".png": "PNG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".ppm": "PPM",
    ".pgm": "PPM",
}
JPEG_QUALITY = 95

_GREY_8 = {"1", "L"}
_GREY_16 = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
_COLOUR_8 = {"RGB", "RGBX", "CMYK", "YCbCr", "P"}
_ALPHA = {"LA": "L", "La": "L", "PA": "RGB", "RGBA": "RGB", "RGBa": "RGB"}
_SAVE_OPTIONS: dict[str, dict[str, object]] = {
    "WEBP": {"lossless": True, "exact": True},
    "JPEG": {"quality": JPEG_QUALITY, "subsampling": 0},
}


@dataclass(frozen=True)
class ImageInfo:
    """What a read image was: bits per sample (8 or 16), and the file's Pillow mode and format.

    ``mode`` names the file's samples as stored ("RGB", "L", "I;16", "P", "RGBA", ...), also
    for 16-bit colour PNGs, which Pillow itself opens as 8-bit "RGB" or "RGBA".
    """

    bit_depth: int
    mode: str
    format: str


# --------------------------------------------------------------------------------------------
# Reading


def _wide_rawmode(im: Image.Image) -> str:
    """The raw mode ("RGB;16B", "LA;16B", ...) of a 16-bit colour or grey+alpha file, else "".

    Pillow has no mode for these: it opens them as 8-bit RGB or RGBA, and only the tile's raw
    mode tells.
    """
    if im.mode not in ("RGB", "RGBA", "LA"):
        return ""
    for tile in im.tile:
        args = tile[3]
        rawmode = args if isinstance(args, str) else args[0] if args else ""
        if isinstance(rawmode, str) and ";16" in rawmode:
            return rawmode
    return ""


def _orient(x: torch.Tensor, orientation: int) -> torch.Tensor:
    """``x`` (C, H, W) displayed as EXIF ``orientation`` says, as ``ImageOps.exif_transpose``."""
    if orientation == 2:
        return x.flip(-1)
    if orientation == 3:
        return x.flip(-2, -1)
    if orientation == 4:
        return x.flip(-2)
    if orientation == 5:
        return x.transpose(-2, -1)
    if orientation == 6:
        return x.rot90(-1, (-2, -1))
    if orientation == 7:
        return x.transpose(-2, -1).flip(-2, -1)
    if orientation == 8:
        return x.rot90(1, (-2, -1))
    return x


def _plan(im: Image.Image, path: Path, drop_alpha: bool) -> tuple[str, int, int, str]:
    """(the file's mode, channels, bit depth, Pillow mode to convert to or "" for 16-bit colour)."""
    rawmode = _wide_rawmode(im)
    source = rawmode.split(";")[0] if rawmode else im.mode
    mode = source
    if mode in _ALPHA or "transparency" in im.info:
        if not drop_alpha:
            raise UnsupportedMediaError(
                f"{path} has an alpha channel ({mode}), which neurocodec does not code; drop it first "
                "(drop_alpha=True, or convert the image to RGB or grey)"
            )
        mode = _ALPHA.get(mode, mode)
    if rawmode:
        if im.format != "PNG":
            raise UnsupportedMediaError(
                f"{path}: 16-bit colour {im.format} is not supported (Pillow reads it as 8-bit); "
                "convert it to a 16-bit PNG"
            )
        return source, (1 if mode == "L" else 3), 16, ""
    if mode in _GREY_16:
        return source, 1, 16, mode
    if mode in _GREY_8:
        return source, 1, 8, "L"
    if mode in _COLOUR_8:
        return source, 3, 8, "RGB"
    raise UnsupportedMediaError(f"{path}: images of Pillow mode {im.mode} are not supported")


def _pixels(im: Image.Image, path: Path, channels: int, target: str) -> np.ndarray:
    """The decoded samples, (H, W) or (H, W, C), of integer type."""
    if not target:  # 16-bit colour PNG: the first ``channels`` planes (no alpha)
        try:
            x = decode_png(read_file(str(path)), ImageReadMode.UNCHANGED)
        except RuntimeError as e:
            raise MediaReadError(f"cannot decode {path}: {e}") from None
        return x[:channels].permute(1, 2, 0).numpy()
    array = np.asarray(im if im.mode == target else im.convert(target))
    if target == "I" and (array.min() < 0 or array.max() > 0xFFFF):
        raise UnsupportedMediaError(f"{path}: samples outside 0..65535 are not supported")
    return array


def _read(im: Image.Image, path: Path, drop_alpha: bool) -> tuple[torch.Tensor, ImageInfo]:
    if im.format not in READ_FORMATS:
        raise UnsupportedMediaError(
            f"{path}: {im.format} images are not supported ({', '.join(READ_FORMATS)})"
        )
    if getattr(im, "n_frames", 1) > 1:
        raise UnsupportedMediaError(f"{path}: animated or multi-page images are not supported")
    source, channels, bit_depth, target = _plan(im, path, drop_alpha)
    try:
        ImageGeometry(im.height, im.width, channels, bit_depth)
    except GeometryError as e:
        raise UnsupportedMediaError(f"{path}: {e}") from None
    orientation = im.getexif().get(ExifTags.Base.Orientation, 1)
    array = _pixels(im, path, channels, target)
    x = torch.from_numpy(array.astype(np.float32)).reshape(im.height, im.width, channels)
    x = x.permute(2, 0, 1).div_((1 << bit_depth) - 1)
    return _orient(x, orientation).contiguous(), ImageInfo(bit_depth, source, im.format)


def read_image(path: str | os.PathLike[str], *, drop_alpha: bool = False) -> tuple[torch.Tensor, ImageInfo]:
    """An image file as a float32 ``(C, H, W)`` tensor in ``[0, 1]`` and what it was.

    Raises :class:`UnsupportedMediaError` for formats, modes, alpha (unless ``drop_alpha``)
    or sizes neurocodec does not handle, and :class:`MediaReadError` for missing, unreadable
    or corrupt files.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            return _read(im, path, drop_alpha)
    except NeurocodecError:
        raise
    except Image.DecompressionBombError as e:
        raise UnsupportedMediaError(f"{path}: too large to decode safely ({e})") from None
    except UnidentifiedImageError:
        raise UnsupportedMediaError(
            f"{path} is not an image neurocodec can read ({', '.join(READ_FORMATS)})"
        ) from None
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        raise MediaReadError(f"cannot read {path}: {e.strerror}") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as e:
        raise MediaReadError(f"cannot decode {path}: {e}") from None


# --------------------------------------------------------------------------------------------
# Writing


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_rgb16(array: np.ndarray) -> bytes:
    """A 16-bit RGB PNG of ``array`` (H, W, 3) uint16, every row with the Sub filter."""
    height, width, _ = array.shape
    rows = array.astype(">u2").view(np.uint8).reshape(height, width * 6)
    filtered = rows.copy()
    filtered[:, 6:] -= rows[:, :-6]  # Sub: each byte minus the same byte of the previous pixel
    raw = np.concatenate([np.ones((height, 1), np.uint8), filtered], axis=1).tobytes()
    compressed = zlib.compress(raw, 6)
    step = 1 << 20
    idat = b"".join(_png_chunk(b"IDAT", compressed[i : i + step]) for i in range(0, len(compressed), step))
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + idat + _png_chunk(b"IEND", b"")


def _encode(array: np.ndarray, fmt: str, path: Path) -> bytes:
    if array.dtype == np.uint16 and array.ndim == 3:
        if fmt != "PNG":
            raise UnsupportedMediaError(f"cannot write {path}: 16-bit RGB is written only as PNG")
        return _png_rgb16(array)
    buffer = io.BytesIO()
    try:
        Image.fromarray(array).save(buffer, fmt, **_SAVE_OPTIONS.get(fmt, {}))
    except (OSError, ValueError) as e:
        raise UnsupportedMediaError(f"cannot write {path} as {fmt}: {e}") from None
    return buffer.getvalue()


def write_image(
    path: str | os.PathLike[str], image: torch.Tensor, *, bit_depth: int = 8, overwrite: bool = False
) -> None:
    """Write a ``(C, H, W)`` tensor in ``[0, 1]`` (C = 1 or 3) as an image file, atomically.

    The format follows the extension: .png, .webp (lossless), .tif/.tiff, .jpg/.jpeg (quality
    95, 4:4:4), .ppm (RGB) or .pgm (grey). Samples are clamped to ``[0, 1]`` and rounded to
    ``bit_depth`` (8, or 16 for PNG, TIFF and PGM; 16-bit RGB only as PNG). WebP has no grey
    mode: a grey image reads back as three equal channels. An existing file is replaced only
    with ``overwrite=True``.
    """
    path = Path(path)
    fmt = WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UnsupportedMediaError(
            f"cannot write {path}: unknown image extension {path.suffix!r} ({', '.join(WRITE_FORMATS)})"
        )
    if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(
            f"image must be a (C, H, W) tensor with C = 1 or 3, not {getattr(image, 'shape', image)}"
        )
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, not {bit_depth!r}")
    channels = image.shape[0]
    if bit_depth == 16 and fmt in ("JPEG", "WEBP"):
        raise UnsupportedMediaError(f"cannot write {path}: {fmt} has no 16-bit mode (use .png or .tif)")
    if (path.suffix.lower(), channels) in ((".pgm", 3), (".ppm", 1)):
        raise UnsupportedMediaError(f"cannot write {path}: use .pgm for grey and .ppm for RGB images")
    x = image.detach().to("cpu", torch.float32)
    if not torch.isfinite(x).all():
        raise ValueError("image tensor has non-finite values")
    levels = x.clamp(0, 1).mul((1 << bit_depth) - 1).round().permute(1, 2, 0).contiguous().numpy()
    array = levels.astype(np.uint8 if bit_depth == 8 else np.uint16)
    write_atomic(path, _encode(array[..., 0] if channels == 1 else array, fmt, path), overwrite=overwrite)
