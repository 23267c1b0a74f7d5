"""Image reading/writing (neurocodec.io.image) and atomic output (neurocodec.io.atomic)."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from neurocodec.errors import (
    MediaReadError,
    NeurocodecError,
    OutputError,
    OutputExistsError,
    UnsupportedMediaError,
)
from neurocodec.io import atomic
from neurocodec.io.atomic import write_atomic
from neurocodec.io.image import ImageInfo, read_image, write_image

KODIM01 = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak" / "kodim01.png"


def levels(channels: int, height: int = 24, width: int = 40, bits: int = 8, seed: int = 0) -> torch.Tensor:
    """A random image whose samples are exact ``bits``-bit levels, so lossless trips are exact."""
    top = (1 << bits) - 1
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, top + 1, (channels, height, width), generator=g).float() / top


def smooth(height: int = 48, width: int = 64) -> torch.Tensor:
    y = torch.linspace(0, 1, height)[:, None]
    x = torch.linspace(0, 1, width)[None, :]
    return torch.stack([x * y, 0.5 * (x + y), (1 - 0.7 * x).expand(height, width)]).float()


def chw(pixels: np.ndarray) -> torch.Tensor:
    """8-bit (H, W, C) pixels as the float (C, H, W) tensor read_image gives."""
    return torch.from_numpy(np.array(pixels)).permute(2, 0, 1).float() / 255


def files_in(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


# --------------------------------------------------------------------------------------------
# Lossless round trips


@pytest.mark.parametrize(
    ("name", "channels", "bits", "mode"),
    [
        ("a.png", 3, 8, "RGB"),
        ("a.png", 1, 8, "L"),
        ("a.png", 3, 16, "RGB"),
        ("a.png", 1, 16, "I;16"),
        ("a.tif", 3, 8, "RGB"),
        ("a.tiff", 1, 16, "I;16"),
        ("a.webp", 3, 8, "RGB"),
        ("a.ppm", 3, 8, "RGB"),
        ("a.pgm", 1, 8, "L"),
        ("a.pgm", 1, 16, "I"),
    ],
)
def test_lossless_round_trip(tmp_path, name, channels, bits, mode):
    x = levels(channels, bits=bits)
    write_image(tmp_path / name, x, bit_depth=bits)
    y, info = read_image(tmp_path / name)
    assert y.dtype == torch.float32
    assert y.shape == x.shape
    assert torch.equal(y, x)
    assert info.bit_depth == bits
    assert info.mode == mode
    assert files_in(tmp_path) == [name]


def test_rgb16_png_is_a_valid_png(tmp_path):
    x = levels(3, bits=16)
    write_image(tmp_path / "a.png", x, bit_depth=16)
    with Image.open(tmp_path / "a.png") as im:  # Pillow checks the chunks, then reduces to 8 bits
        eight = np.asarray(im)
    expected = (x * 65535).round().to(torch.int32).permute(1, 2, 0).numpy() >> 8
    assert np.array_equal(eight, expected)


def test_jpeg_is_close(tmp_path):
    x = smooth()
    write_image(tmp_path / "a.jpg", x)
    y, info = read_image(tmp_path / "a.jpg")
    assert info == ImageInfo(8, "RGB", "JPEG")
    mse = torch.mean((y - x) ** 2).item()
    assert 10 * np.log10(1 / mse) > 38


def test_clamps_and_rounds(tmp_path):
    x = torch.tensor([[[-0.5, 0.0, 0.5 / 255, 0.6 / 255, 1.0, 7.0]]])
    write_image(tmp_path / "a.png", x)
    with Image.open(tmp_path / "a.png") as im:
        assert np.asarray(im).tolist() == [[0, 0, 0, 1, 255, 255]]


def test_grey_webp_reads_back_as_rgb(tmp_path):
    x = levels(1)
    write_image(tmp_path / "a.webp", x)
    y, _ = read_image(tmp_path / "a.webp")
    assert torch.equal(y, x.expand(3, -1, -1))


@pytest.mark.skipif(not KODIM01.exists(), reason="shared Kodak data not present")
def test_kodak():
    x, info = read_image(KODIM01)
    assert x.shape == (3, 512, 768)
    assert info == ImageInfo(8, "RGB", "PNG")
    assert 0 <= x.min() and x.max() <= 1


# --------------------------------------------------------------------------------------------
# Modes, orientation, alpha, palettes


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation(tmp_path, orientation):
    pixels = (levels(3, height=16, width=32) * 255).to(torch.uint8).permute(1, 2, 0).numpy()
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(tmp_path / "a.jpg", exif=exif, quality=90)
    y, _ = read_image(tmp_path / "a.jpg")
    assert y.shape[1:] == ((32, 16) if orientation >= 5 else (16, 32))
    with Image.open(tmp_path / "a.jpg") as im:
        expected = np.asarray(ImageOps.exif_transpose(im))
    assert torch.equal(y, chw(expected))


@pytest.mark.parametrize(("mode", "kept"), [("RGBA", "RGB"), ("LA", "L")])
def test_alpha_is_refused_or_dropped(tmp_path, mode, kept):
    im = Image.fromarray((levels(len(mode)) * 255).to(torch.uint8).permute(1, 2, 0).numpy(), mode)
    im.save(tmp_path / "a.png")
    with pytest.raises(UnsupportedMediaError, match=r"alpha channel .*drop") as info:
        read_image(tmp_path / "a.png")
    assert "\n" not in str(info.value)
    y, info = read_image(tmp_path / "a.png", drop_alpha=True)
    assert info.mode == mode
    expected = np.asarray(im.convert(kept)).reshape(im.height, im.width, -1)
    assert torch.equal(y, chw(expected))


@pytest.mark.parametrize(("mode", "colour_type"), [("LA", 4), ("RGBA", 6)])
def test_16bit_alpha_png_dropped(tmp_path, mode, colour_type):
    """Pillow opens both as 8-bit RGBA; read_image decodes all 16 bits and drops the alpha."""
    x = levels(len(mode), bits=16)
    rows = (x * 65535).round().to(torch.int32).permute(1, 2, 0).numpy().astype(">u2")
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)
    ihdr = struct.pack(">IIBBBBB", 40, 24, 16, colour_type, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(raw))
    (tmp_path / "a.png").write_bytes(png + png_chunk(b"IEND", b""))
    with pytest.raises(UnsupportedMediaError, match=f"alpha channel \\({mode}\\)"):
        read_image(tmp_path / "a.png")
    y, info = read_image(tmp_path / "a.png", drop_alpha=True)
    assert info == ImageInfo(16, mode, "PNG")
    assert torch.equal(y, x[:-1])


def test_palette_becomes_rgb(tmp_path):
    im = Image.fromarray((levels(3) * 255).to(torch.uint8).permute(1, 2, 0).numpy()).quantize(16)
    im.save(tmp_path / "a.png")
    y, info = read_image(tmp_path / "a.png")
    assert info == ImageInfo(8, "P", "PNG")
    assert torch.equal(y, chw(np.asarray(im.convert("RGB"))))


def test_palette_with_transparency_is_alpha(tmp_path):
    im = Image.new("P", (4, 4))
    im.save(tmp_path / "a.png", transparency=0)
    with pytest.raises(UnsupportedMediaError, match="alpha"):
        read_image(tmp_path / "a.png")
    assert read_image(tmp_path / "a.png", drop_alpha=True)[0].shape == (3, 4, 4)


def test_bilevel_and_cmyk(tmp_path):
    Image.new("1", (5, 3), 1).save(tmp_path / "a.png")
    y, info = read_image(tmp_path / "a.png")
    assert (y.shape, info.mode, info.bit_depth) == ((1, 3, 5), "1", 8)
    assert torch.equal(y, torch.ones(1, 3, 5))
    Image.new("CMYK", (5, 3), (0, 0, 0, 0)).save(tmp_path / "c.jpg")
    y, info = read_image(tmp_path / "c.jpg")
    assert (y.shape, info.mode) == ((3, 3, 5), "CMYK")


def test_16bit_rgb_tiff_is_refused_not_truncated(tmp_path):
    """Pillow reads 16-bit RGB TIFF as 8 bits; neurocodec refuses rather than lose bits."""
    width, height = 4, 3
    pixels = (np.arange(width * height * 3).reshape(height, width, 3) * 1000).astype("<u2").tobytes()

    def entry(tag: int, kind: int, count: int, value: bytes) -> bytes:
        return struct.pack("<HHI", tag, kind, count) + value.ljust(4, b"\x00")

    short = (lambda v: struct.pack("<H", v)), (lambda v: struct.pack("<I", v))
    entries = [
        entry(256, 3, 1, short[0](width)),
        entry(257, 3, 1, short[0](height)),
        entry(258, 3, 3, short[1](8)),  # BitsPerSample at offset 8
        entry(259, 3, 1, short[0](1)),
        entry(262, 3, 1, short[0](2)),
        entry(273, 4, 1, short[1](14)),
        entry(277, 3, 1, short[0](3)),
        entry(278, 3, 1, short[0](height)),
        entry(279, 4, 1, short[1](len(pixels))),
    ]
    ifd = struct.pack("<H", len(entries)) + b"".join(entries) + b"\x00" * 4
    tiff = b"II*\x00" + struct.pack("<I", 14 + len(pixels)) + struct.pack("<3H", 16, 16, 16) + pixels + ifd
    (tmp_path / "a.tif").write_bytes(tiff)
    with pytest.raises(UnsupportedMediaError, match=r"16-bit colour TIFF .*PNG"):
        read_image(tmp_path / "a.tif")


# --------------------------------------------------------------------------------------------
# Bad input files


def test_too_large_is_refused_before_decoding(tmp_path):
    """A PNG header claiming 70000 x 1 with garbage pixel data: the size is refused first."""
    ihdr = struct.pack(">IIBBBBB", 70000, 1, 8, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", b"garbage")
    (tmp_path / "a.png").write_bytes(png + png_chunk(b"IEND", b""))
    with pytest.raises(UnsupportedMediaError, match="width 70000 is outside"):
        read_image(tmp_path / "a.png")


def test_decompression_bomb(tmp_path):
    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", b"garbage")
    (tmp_path / "a.png").write_bytes(png + png_chunk(b"IEND", b""))
    with pytest.raises(UnsupportedMediaError, match="too large"):
        read_image(tmp_path / "a.png")


def test_corrupt_and_missing_files(tmp_path):
    write_image(tmp_path / "a.png", levels(3, 64, 64))
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaReadError, match="cannot decode"):
        read_image(tmp_path / "cut.png")
    (tmp_path / "noise.png").write_bytes(os.urandom(300))
    with pytest.raises(UnsupportedMediaError, match="not an image"):
        read_image(tmp_path / "noise.png")
    with pytest.raises(MediaReadError, match="cannot read"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(MediaReadError, match="cannot read"):
        read_image(tmp_path)


def test_unsupported_formats(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "a.bmp")
    with pytest.raises(UnsupportedMediaError, match="BMP images are not supported"):
        read_image(tmp_path / "a.bmp")
    pages = [Image.new("L", (4, 4), v) for v in (0, 255)]
    pages[0].save(tmp_path / "pages.tif", save_all=True, append_images=pages[1:])
    with pytest.raises(UnsupportedMediaError, match="multi-page"):
        read_image(tmp_path / "pages.tif")
    Image.new("F", (4, 4)).save(tmp_path / "float.tif")
    with pytest.raises(UnsupportedMediaError, match="mode F"):
        read_image(tmp_path / "float.tif")


# --------------------------------------------------------------------------------------------
# Writing: refusals and atomicity


@pytest.mark.parametrize(
    ("name", "x", "bits", "message"),
    [
        ("a.gif", levels(3), 8, "unknown image extension '.gif'"),
        ("a", levels(3), 8, "unknown image extension ''"),
        ("a.jpg", levels(3), 16, "no 16-bit mode"),
        ("a.webp", levels(1), 16, "no 16-bit mode"),
        ("a.tif", levels(3), 16, "16-bit RGB is written only as PNG"),
        ("a.pgm", levels(3), 8, "use .pgm for grey"),
        ("a.ppm", levels(1), 8, "use .pgm for grey"),
    ],
)
def test_write_refusals(tmp_path, name, x, bits, message):
    with pytest.raises(UnsupportedMediaError, match=message):
        write_image(tmp_path / name, x, bit_depth=bits)
    assert files_in(tmp_path) == []


@pytest.mark.parametrize(
    ("x", "bits"),
    [
        (torch.zeros(2, 4, 4), 8),
        (torch.zeros(4, 4), 8),
        (torch.zeros(3, 4, 4), 12),
        (torch.full((1, 2, 2), np.nan), 8),
    ],
)
def test_write_bad_arguments(tmp_path, x, bits):
    with pytest.raises(ValueError):
        write_image(tmp_path / "a.png", x, bit_depth=bits)


def test_write_image_never_clobbers(tmp_path):
    target = tmp_path / "a.png"
    target.write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match="already exists"):
        write_image(target, levels(3))
    assert target.read_bytes() == b"precious"
    write_image(target, levels(3), overwrite=True)
    assert torch.equal(read_image(target)[0], levels(3))
    assert files_in(tmp_path) == ["a.png"]


def test_write_atomic_new_and_overwrite(tmp_path):
    target = tmp_path / "out.bin"
    write_atomic(target, b"one")
    assert target.read_bytes() == b"one"
    with pytest.raises(OutputExistsError):
        write_atomic(target, b"two")
    assert target.read_bytes() == b"one"
    write_atomic(target, b"two", overwrite=True)
    assert target.read_bytes() == b"two"
    write_atomic(str(tmp_path / "empty.bin"), b"")
    assert files_in(tmp_path) == ["empty.bin", "out.bin"]


def test_write_atomic_uses_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        write_atomic(tmp_path / "a", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o640


def test_write_atomic_bad_targets(tmp_path):
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(OutputError, match="is a directory"):
        write_atomic(tmp_path, b"x", overwrite=True)
    with pytest.raises(OutputError, match="no such directory"):
        write_atomic(tmp_path / "missing" / "a", b"x")
    with pytest.raises(OutputError, match="no such directory"):
        write_atomic(tmp_path / "file" / "a", b"x")
    assert files_in(tmp_path) == ["file"]
    assert issubclass(OutputExistsError, OutputError)
    assert issubclass(OutputError, NeurocodecError)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only directories")
def test_write_atomic_unwritable_directory(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="Permission denied"):
            write_atomic(locked / "a", b"x")
    finally:
        locked.chmod(0o700)


def test_write_atomic_permission_denied(tmp_path, monkeypatch):
    """As test_write_atomic_unwritable_directory, for root too: creating the file fails."""

    def denied(*args):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(atomic.os, "open", denied)
    with pytest.raises(OutputError, match=r"cannot write .*: Permission denied"):
        write_atomic(tmp_path / "a", b"x")
    assert files_in(tmp_path) == []


@pytest.mark.parametrize("overwrite", [False, True])
def test_write_atomic_failure_leaves_nothing(tmp_path, monkeypatch, overwrite):
    target = tmp_path / "a"
    if overwrite:
        target.write_bytes(b"precious")

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", broken_fsync)
    with pytest.raises(OutputError, match="No space left on device"):
        write_atomic(target, b"new", overwrite=overwrite)
    assert files_in(tmp_path) == (["a"] if overwrite else [])
    if overwrite:
        assert target.read_bytes() == b"precious"


def test_write_atomic_race_never_clobbers(tmp_path, monkeypatch):
    """A file that appears after the existence check is still not replaced."""
    target = tmp_path / "a"
    target.write_bytes(b"precious")
    monkeypatch.setattr(atomic.os.path, "lexists", lambda path: False)
    with pytest.raises(OutputExistsError):
        write_atomic(target, b"new")
    assert target.read_bytes() == b"precious"
    assert files_in(tmp_path) == ["a"]


def test_write_atomic_without_hard_links(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(atomic.os, "link", no_links)
    write_atomic(tmp_path / "a", b"x")
    assert (tmp_path / "a").read_bytes() == b"x"
    with pytest.raises(OutputExistsError):
        write_atomic(tmp_path / "a", b"y")
    assert files_in(tmp_path) == ["a"]
