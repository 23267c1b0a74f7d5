"""Video in and out: MP4/MKV/MOV/WebM/AVI (PyAV), YUV4MPEG2 (.y4m) and raw .yuv <-> tensors.

A tensor is float32 ``(C, T, H, W)`` in ``[0, 1]``, RGB (``C = 3``). Containers are decoded by
PyAV (FFmpeg); .y4m and .yuv are read natively. The geometry (frame size, frame count, rate) is
checked against the container's limits (:class:`~neurocodec.container.VideoGeometry`) before
any frame is decoded, and ``max_frames`` reads only the first frames.

Colour: YUV <-> RGB uses BT.601 with limited ("TV") range, 16..235 for Y and 16..240 for
Cb/Cr, which is also what FFmpeg assumes for untagged streams. A .y4m tagged
``XCOLORRANGE=FULL`` uses full range. Chroma is upsampled by sample repetition and
downsampled by averaging 2x2 (4:2:0) or 2x1 (4:2:2) blocks. ``read_y4m(..., rgb=False)`` and
``read_yuv(..., rgb=False)`` return the planes untouched instead: a tuple ``(Y, U, V)`` of
float32 ``(T, h, w)`` tensors, the codes divided by ``2 ** bit_depth - 1``, which
:func:`write_y4m` accepts back unchanged (an exact round trip).
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from neurocodec.container import VideoGeometry
from neurocodec.errors import GeometryError, MediaReadError, NeurocodecError, UnsupportedMediaError
from neurocodec.io.atomic import write_atomic

CONTAINER_EXTENSIONS = (".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v")
WRITE_FORMATS = {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov"}
CRF = 23  # x264 / x265 default
# pix_fmt -> (chroma subsampling (x, y) or None for grey, bit depth)
RAW_FORMATS = {
    "yuv420p": ((2, 2), 8),
    "yuv422p": ((2, 1), 8),
    "yuv444p": ((1, 1), 8),
    "gray": (None, 8),
    "yuv420p10le": ((2, 2), 10),
    "yuv422p10le": ((2, 1), 10),
    "yuv444p10le": ((1, 1), 10),
    "gray10le": (None, 10),
}
_Y4M_CHROMA = {"420": "yuv420p", "422": "yuv422p", "444": "yuv444p", "mono": "gray"}
_Y4M_CHROMA_RE = re.compile(r"(420|422|444|mono)(jpeg|paldv|mpeg2)?(?:p(\d+))?")
_Y4M_MAGIC = b"YUV4MPEG2"
_MAX_HEADER = 1024

Rate = int | Fraction | tuple[int, int]
Planes = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class VideoInfo:
    """What a read video was: its frame rate ``rate_num / rate_den``, size, frame count,
    pixel format ("yuv420p", ...) and codec ("h264", "rawvideo", ...).

    ``frames`` is the number of frames in the file (as far as the header tells), not the
    number read when ``max_frames`` stopped early. ``full_range``: YUV codes span the full
    range (a .y4m tagged ``XCOLORRANGE=FULL``), not the limited one.
    """

    rate_num: int
    rate_den: int
    width: int
    height: int
    frames: int
    pix_fmt: str
    codec: str
    full_range: bool = False


def frame_rate(rate: Rate) -> Fraction:
    """A frame rate given as an int, a :class:`~fractions.Fraction` or ``(num, den)``, as a positive Fraction."""
    if isinstance(rate, tuple):
        rate = Fraction(*rate)
    if isinstance(rate, bool) or not isinstance(rate, int | Fraction) or rate <= 0:
        raise ValueError(f"rate must be a positive int, Fraction or (num, den), not {rate!r}")
    return Fraction(rate)


def _check(path: Path, frames: int, rate: Fraction, height: int, width: int, bits: int) -> None:
    try:
        VideoGeometry(frames, rate.numerator, rate.denominator, height, width, 3, bits)
    except GeometryError as e:
        raise UnsupportedMediaError(f"{path}: {e}") from None


def _limit(max_frames: int | None) -> int | None:
    if max_frames is not None and (
        isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1
    ):
        raise ValueError(f"max_frames must be a positive int or None, not {max_frames!r}")
    return max_frames


# --------------------------------------------------------------------------------------------
# Colour


def yuv_to_rgb(planes: Planes, full_range: bool = False) -> torch.Tensor:
    """Planes ``(Y, U, V)``, each ``(T, h, w)`` in ``[0, 1]``, -> RGB ``(3, T, H, W)`` in ``[0, 1]``,
    BT.601, limited range unless ``full_range`` (chroma upsampled by repetition)."""
    y, u, v = planes
    t, height, width = y.shape
    if u.numel() == 0:  # grey
        luma = y if full_range else (y - 16 / 255) * (255 / 219)
        return luma.clamp(0, 1).unsqueeze(0).expand(3, t, height, width).contiguous()
    fy, fx = -(-height // u.shape[1]), -(-width // u.shape[2])
    u = u.repeat_interleave(fy, 1).repeat_interleave(fx, 2)[:, :height, :width]
    v = v.repeat_interleave(fy, 1).repeat_interleave(fx, 2)[:, :height, :width]
    if full_range:
        luma, cb, cr = y, u - 128 / 255, v - 128 / 255
    else:
        luma, cb, cr = (
            (y - 16 / 255) * (255 / 219),
            (u - 128 / 255) * (255 / 224),
            (v - 128 / 255) * (255 / 224),
        )
    r = luma + 1.402 * cr
    g = luma - 0.344136 * cb - 0.714136 * cr
    b = luma + 1.772 * cb
    return torch.stack([r, g, b]).clamp_(0, 1)


def _rgb_to_yuv(rgb: torch.Tensor, sub: tuple[int, int]) -> Planes:
    """RGB (3, T, H, W) in [0, 1] -> limited-range BT.601 planes in [0, 1], chroma subsampled."""
    r, g, b = rgb.to(torch.float64)
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    cb = (b - luma) / 1.772
    cr = (r - luma) / 1.402
    y = (16 + 219 * luma) / 255
    u = (128 + 224 * cb) / 255
    v = (128 + 224 * cr) / 255
    fx, fy = sub
    if fx > 1 or fy > 1:
        u, v = _subsample(u, (fx, fy)), _subsample(v, (fx, fy))
    return y.float(), u.float(), v.float()


def _subsample(plane: torch.Tensor, sub: tuple[int, int]) -> torch.Tensor:
    """``plane`` (T, H, W) averaged over ``sub`` = (x, y) blocks; a block cut by the edge averages
    the samples it has (so a plane upsampled by repetition comes back exactly)."""
    fx, fy = sub
    return torch.nn.functional.avg_pool2d(plane, (fy, fx), ceil_mode=True)


# the chroma subsampling (x, y) of each YCbCr colour of a video geometry (container.COLOURS)
SUBSAMPLING = {"yuv444": (1, 1), "yuv422": (2, 1), "yuv420": (2, 2)}


def planes_to_tensor(planes: Planes) -> tuple[torch.Tensor, str]:
    """Planes ``(Y, U, V)`` of ``(T, h, w)`` -> ``(3, T, H, W)`` (Y, Cb, Cr at the frame's size, chroma
    repeated) and its colour ("yuv444", "yuv422" or "yuv420"): a video codec's YUV input, which
    :func:`tensor_to_planes` turns back into exactly these planes. No colour conversion."""
    y, u, v = planes
    if u.numel() == 0:
        raise UnsupportedMediaError("a grey video has no chroma planes: read it as RGB")
    t, height, width = y.shape
    fy, fx = -(-height // u.shape[1]), -(-width // u.shape[2])
    colour = {sub: name for name, sub in SUBSAMPLING.items()}.get((fx, fy))
    if colour is None or u.shape != v.shape or u.shape != (t, -(-height // fy), -(-width // fx)):
        raise UnsupportedMediaError(
            f"plane shapes {y.shape}, {u.shape}, {v.shape} are not 4:4:4, 4:2:2 or 4:2:0"
        )

    def full(p: torch.Tensor) -> torch.Tensor:
        return p.repeat_interleave(fy, 1).repeat_interleave(fx, 2)[:, :height, :width]

    return torch.stack([y, full(u), full(v)]), colour


def tensor_to_planes(x: torch.Tensor, colour: str) -> Planes:
    """A video codec's ``(3, T, H, W)`` of ``colour`` -> planes ``(Y, U, V)``: Y, Cb, Cr with the chroma
    averaged back to the colour's subsampling; an "rgb" video is converted (BT.601, limited range)
    to 4:2:0, the planes the video baselines are measured on."""
    x = x.detach().float().cpu()
    if colour == "rgb":
        return _rgb_to_yuv(x.clamp(0, 1), (2, 2))
    if colour not in SUBSAMPLING:
        raise ValueError(f"colour must be rgb or one of {', '.join(SUBSAMPLING)}, not {colour!r}")
    return x[0], _subsample(x[1], SUBSAMPLING[colour]), _subsample(x[2], SUBSAMPLING[colour])


# --------------------------------------------------------------------------------------------
# Raw planes: .y4m and .yuv


def _plane_shapes(pix_fmt: str, height: int, width: int) -> tuple[tuple[int, int], tuple[int, int], int]:
    """((H, W) of luma, (h, w) of each chroma plane, bytes per sample)."""
    sub, bits = RAW_FORMATS[pix_fmt]
    if sub is None:
        return (height, width), (0, 0), (2 if bits > 8 else 1)
    return (height, width), (-(-height // sub[1]), -(-width // sub[0])), (2 if bits > 8 else 1)


def _frame_bytes(pix_fmt: str, height: int, width: int) -> int:
    (h, w), (ch, cw), size = _plane_shapes(pix_fmt, height, width)
    return (h * w + 2 * ch * cw) * size


def _split(raw: bytes, count: int, pix_fmt: str, height: int, width: int) -> Planes:
    (h, w), (ch, cw), size = _plane_shapes(pix_fmt, height, width)
    bits = RAW_FORMATS[pix_fmt][1]
    codes = np.frombuffer(raw, np.uint8 if size == 1 else np.dtype("<u2")).reshape(count, -1)
    scale = float((1 << bits) - 1)
    y = codes[:, : h * w].reshape(count, h, w)
    u = codes[:, h * w : h * w + ch * cw].reshape(count, ch, cw)
    v = codes[:, h * w + ch * cw :].reshape(count, ch, cw)
    return tuple(torch.from_numpy(p.astype(np.float32)).div_(scale) for p in (y, u, v))  # type: ignore[return-value]


def _finish(planes: Planes, rgb: bool, full_range: bool) -> torch.Tensor | Planes:
    return yuv_to_rgb(planes, full_range) if rgb else planes


def _open(path: Path):
    try:
        return open(path, "rb")
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        raise MediaReadError(f"cannot read {path}: {e.strerror}") from None


def _parse_y4m_header(path: Path, line: bytes) -> tuple[int, int, Fraction, str, bool]:
    tokens = line.decode("ascii", "replace").split()
    if not tokens or tokens[0] != "YUV4MPEG2":
        raise UnsupportedMediaError(f"{path} is not a YUV4MPEG2 file")
    width = height = None
    rate = Fraction(25)
    pix_fmt, full_range = "yuv420p", False
    try:
        for token in tokens[1:]:
            key, value = token[0], token[1:]
            if key == "W":
                width = int(value)
            elif key == "H":
                height = int(value)
            elif key == "F":
                num, den = value.split(":")
                rate = Fraction(int(num), int(den))
            elif key == "I" and value not in ("p", "?"):
                raise UnsupportedMediaError(f"{path}: interlaced Y4M (I{value}) is not supported")
            elif key == "C":
                match = _Y4M_CHROMA_RE.fullmatch(value)
                bits = int(match.group(3) or 8) if match else 0
                if not match or bits not in (8, 10):
                    raise UnsupportedMediaError(f"{path}: Y4M chroma format C{value} is not supported")
                pix_fmt = _Y4M_CHROMA[match.group(1)] + ("" if bits == 8 else "10le")
                if pix_fmt == "gray10le" or (bits > 8 and match.group(1) == "mono"):
                    pix_fmt = "gray10le"
            elif token == "XCOLORRANGE=FULL":
                full_range = True
    except (ValueError, ZeroDivisionError):
        raise MediaReadError(f"cannot decode {path}: malformed Y4M header {line[:80]!r}") from None
    if width is None or height is None:
        raise MediaReadError(f"cannot decode {path}: the Y4M header has no W or H")
    return width, height, rate, pix_fmt, full_range


def read_y4m(
    path: str | os.PathLike[str], rgb: bool = True, *, max_frames: int | None = None
) -> tuple[torch.Tensor | Planes, VideoInfo]:
    """A YUV4MPEG2 file as RGB ``(3, T, H, W)`` (or its planes with ``rgb=False``) and what it was.

    8- and 10-bit 4:2:0, 4:2:2, 4:4:4 and mono are read; ``info.frames`` counts the frames
    of the whole file, at most ``max_frames`` are decoded.
    """
    path = Path(path)
    max_frames = _limit(max_frames)
    with _open(path) as f:
        line = f.readline(_MAX_HEADER)
        if not line.startswith(_Y4M_MAGIC):
            raise UnsupportedMediaError(f"{path} is not a YUV4MPEG2 file")
        if not line.endswith(b"\n"):
            raise MediaReadError(f"cannot decode {path}: the Y4M header is truncated or too long")
        width, height, rate, pix_fmt, full_range = _parse_y4m_header(path, line)
        try:
            frame_bytes = _frame_bytes(pix_fmt, height, width)
        except (ValueError, OverflowError):
            raise MediaReadError(f"cannot decode {path}: bad Y4M geometry") from None
        remaining = os.fstat(f.fileno()).st_size - len(line)
        frames = remaining // (len(b"FRAME\n") + frame_bytes) if frame_bytes > 0 else 0
        _check(path, max(frames, 1), rate, height, width, RAW_FORMATS[pix_fmt][1])
        if frames == 0:
            raise MediaReadError(f"cannot decode {path}: it holds no complete frame")
        wanted = frames if max_frames is None else min(frames, max_frames)
        chunks = []
        for index in range(wanted):
            marker = f.readline(_MAX_HEADER)
            if not marker.startswith(b"FRAME") or not marker.endswith(b"\n"):
                raise MediaReadError(f"cannot decode {path}: frame {index} has no FRAME header")
            data = f.read(frame_bytes)
            if len(data) != frame_bytes:
                raise MediaReadError(f"cannot decode {path}: frame {index} is truncated")
            chunks.append(data)
    planes = _split(b"".join(chunks), wanted, pix_fmt, height, width)
    info = VideoInfo(rate.numerator, rate.denominator, width, height, frames, pix_fmt, "rawvideo", full_range)
    return _finish(planes, rgb, full_range), info


def read_yuv(
    path: str | os.PathLike[str],
    width: int,
    height: int,
    pix_fmt: str = "yuv420p",
    rate: Rate = (30, 1),
    *,
    rgb: bool = True,
    full_range: bool = False,
    max_frames: int | None = None,
) -> tuple[torch.Tensor | Planes, VideoInfo]:
    """A headerless planar YUV file of the given geometry, as :func:`read_y4m` returns it.

    ``pix_fmt`` is one of ``RAW_FORMATS`` (yuv420p, yuv422p, yuv444p, gray, and their 10-bit
    little-endian forms). The file must hold a whole number of frames.
    """
    path = Path(path)
    max_frames = _limit(max_frames)
    if pix_fmt not in RAW_FORMATS:
        raise UnsupportedMediaError(
            f"raw pixel format {pix_fmt!r} is not supported ({', '.join(RAW_FORMATS)})"
        )
    fraction = frame_rate(rate)
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, not {value!r}")
    with _open(path) as f:
        size = os.fstat(f.fileno()).st_size
        _check(path, 1, fraction, height, width, RAW_FORMATS[pix_fmt][1])
        frame_bytes = _frame_bytes(pix_fmt, height, width)
        frames, rest = divmod(size, frame_bytes)
        if frames == 0 or rest:
            raise MediaReadError(
                f"cannot decode {path}: {size} bytes is not a whole number of {width}x{height} "
                f"{pix_fmt} frames ({frame_bytes} bytes each)"
            )
        _check(path, frames, fraction, height, width, RAW_FORMATS[pix_fmt][1])
        wanted = frames if max_frames is None else min(frames, max_frames)
        raw = f.read(wanted * frame_bytes)
    planes = _split(raw, wanted, pix_fmt, height, width)
    info = VideoInfo(
        fraction.numerator, fraction.denominator, width, height, frames, pix_fmt, "rawvideo", full_range
    )
    return _finish(planes, rgb, full_range), info


_RAW_SIZE = re.compile(r"(?<![0-9])([1-9]\d*)x([1-9]\d*)(?![0-9])")
_RAW_RATE = re.compile(r"(?<![0-9])([1-9]\d*)(?:-([1-9]\d*))?fps", re.IGNORECASE)


def raw_geometry(path: str | os.PathLike[str]) -> tuple[int, int, str, Fraction] | None:
    """``(width, height, pix_fmt, rate)`` of a raw .yuv file from its name, as test sequences are
    named: ``CiscoVT2people_320x192_12fps_i420_9f.yuv`` is 320x192 yuv420p at 12 fps,
    ``clip_176x144_30000-1001fps.yuv`` 29.97 fps. The rate defaults to 30 fps, the pixel format
    to yuv420p (I420) unless a word of the name is one of :data:`RAW_FORMATS`; None without a size."""
    name = Path(path).stem
    size, rate = _RAW_SIZE.search(name), _RAW_RATE.search(name)
    if size is None:
        return None
    named = [word for word in re.split(r"[_\-.]", name.lower()) if word in RAW_FORMATS]
    fraction = Fraction(int(rate[1]), int(rate[2] or 1)) if rate else Fraction(30)
    return int(size[1]), int(size[2]), (named or ["yuv420p"])[0], fraction


# --------------------------------------------------------------------------------------------
# Containers (PyAV)


def _planes(frame, pix_fmt: str) -> list[np.ndarray]:
    """The planes of a decoded PyAV frame in ``pix_fmt`` (one of :data:`RAW_FORMATS`), as
    ``(h, w)`` arrays of its codes (lines cut to the plane's width)."""
    dtype = np.dtype(np.uint8 if RAW_FORMATS[pix_fmt][1] == 8 else "<u2")
    return [
        np.frombuffer(plane, dtype).reshape(plane.height, plane.line_size // dtype.itemsize)[:, : plane.width]
        for plane in frame.planes
    ]


def _read_container(
    path: Path, max_frames: int | None, rgb: bool = True, data: bytes | None = None
) -> tuple[torch.Tensor | Planes, VideoInfo]:
    """The video of a container file at ``path``, or in ``data`` (then ``path`` only names it)."""
    try:
        return _decode_container(path, max_frames, rgb, data)
    except NeurocodecError:
        raise
    except (OSError, ValueError, EOFError) as e:
        raise MediaReadError(f"cannot decode {path}: {e}") from None


def _decode_container(
    path: Path, max_frames: int | None, rgb: bool, data: bytes | None
) -> tuple[torch.Tensor | Planes, VideoInfo]:
    import av

    try:
        container = av.open(str(path) if data is None else io.BytesIO(data))
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        raise MediaReadError(f"cannot read {path}: {e.strerror or e}") from None
    except av.error.FFmpegError as e:
        raise MediaReadError(f"cannot decode {path}: {e}") from None
    with container:
        if not container.streams.video:
            raise UnsupportedMediaError(f"{path} has no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate:
            raise MediaReadError(f"cannot decode {path}: the video stream has no frame rate")
        rate = Fraction(rate)
        frames = int(stream.frames or 0)
        if frames <= 0 and stream.duration and stream.time_base:
            frames = round(stream.duration * stream.time_base * rate)
        if frames <= 0 and container.duration:
            frames = round(Fraction(container.duration, 1_000_000) * rate)
        width, height = stream.codec_context.width, stream.codec_context.height
        pix_fmt = stream.codec_context.pix_fmt or "?"
        bits = 16 if re.search(r"p1[0-6]|p9", pix_fmt) else 8
        _check(path, max(frames, 1), rate, height, width, bits)
        if not rgb and pix_fmt not in RAW_FORMATS:
            raise UnsupportedMediaError(
                f"{path}: planes of {pix_fmt} are not read ({', '.join(RAW_FORMATS)}); read it as RGB"
            )
        out_format, dtype, scale = ("rgb48le", np.uint16, 65535.0) if bits > 8 else ("rgb24", np.uint8, 255.0)
        pictures: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                if (frame.width, frame.height) != (width, height):
                    raise UnsupportedMediaError(f"{path}: the frame size changes mid-stream")
                if rgb:
                    pictures.append(frame.to_ndarray(format=out_format).astype(dtype, copy=False))
                else:
                    pictures.append(_planes(frame, pix_fmt))
                if max_frames is not None and len(pictures) >= max_frames:
                    break
                if len(pictures) > max(frames, 1) and len(pictures) >= (1 << 24):
                    raise UnsupportedMediaError(f"{path}: too many frames")
        except av.error.FFmpegError as e:
            raise MediaReadError(f"cannot decode {path}: {e}") from None
        codec = stream.codec_context.name
    if not pictures:
        raise MediaReadError(f"cannot decode {path}: it holds no decodable frame")
    info = VideoInfo(
        rate.numerator, rate.denominator, width, height, max(frames, len(pictures)), pix_fmt, codec
    )
    if not rgb:
        scale = float((1 << RAW_FORMATS[pix_fmt][1]) - 1)
        planes = [
            torch.from_numpy(np.stack(p).astype(np.float32)).div_(scale) for p in zip(*pictures, strict=True)
        ]
        empty = torch.zeros(len(pictures), 0, 0)
        return (*planes, empty, empty)[:3], info  # grey: empty chroma, as read_y4m gives it
    array = np.stack(pictures)  # (T, H, W, 3)
    x = torch.from_numpy(array.astype(np.float32)).div_(scale).permute(3, 0, 1, 2).contiguous()
    return x, info


def read_video(
    path: str | os.PathLike[str], *, max_frames: int | None = None, rgb: bool = True
) -> tuple[torch.Tensor | Planes, VideoInfo]:
    """A video file as a float32 RGB ``(3, T, H, W)`` tensor in ``[0, 1]`` and what it was; with
    ``rgb=False``, its planes ``(Y, U, V)`` untouched (as :func:`read_y4m` gives them).

    .y4m is read natively; MP4, MKV, MOV, WebM and AVI through PyAV. Raw .yuv has no header: it
    is read when its name gives the geometry (:func:`raw_geometry`), else use :func:`read_yuv`.
    Raises :class:`UnsupportedMediaError` for formats or sizes neurocodec does not handle and
    :class:`MediaReadError` for missing or corrupt files.
    """
    path = Path(path)
    max_frames = _limit(max_frames)
    suffix = path.suffix.lower()
    if suffix == ".y4m":
        return read_y4m(path, rgb, max_frames=max_frames)
    if suffix == ".yuv":
        geometry = raw_geometry(path)
        if geometry is None:
            raise UnsupportedMediaError(
                f"{path}: raw .yuv has no header and its name gives no geometry (such as "
                "clip_352x288_30fps.yuv); use read_yuv(path, width, height, ...)"
            )
        return read_yuv(path, *geometry, rgb=rgb, max_frames=max_frames)
    if suffix not in CONTAINER_EXTENSIONS:
        raise UnsupportedMediaError(
            f"{path}: unknown video extension {path.suffix!r} ({', '.join((*CONTAINER_EXTENSIONS, '.y4m'))})"
        )
    return _read_container(path, max_frames, rgb)


def decode_video(
    data: bytes, *, max_frames: int | None = None, rgb: bool = True, name: str = "<bytes>"
) -> tuple[torch.Tensor | Planes, VideoInfo]:
    """The bytes of a container file (MP4, Matroska, ...) decoded by PyAV, as :func:`read_video`
    reads a file; ``name`` is what error messages call it."""
    return _read_container(Path(name), _limit(max_frames), rgb, bytes(data))


# --------------------------------------------------------------------------------------------
# Writing


def _check_tensor(video: torch.Tensor) -> torch.Tensor:
    if (
        not isinstance(video, torch.Tensor)
        or video.ndim != 4
        or video.shape[0] not in (1, 3)
        or video.shape[1] < 1
    ):
        raise ValueError(
            f"video must be a (C, T, H, W) tensor with C = 1 or 3, not {getattr(video, 'shape', video)}"
        )
    x = video.detach().to("cpu", torch.float32)
    if not torch.isfinite(x).all():
        raise ValueError("video tensor has non-finite values")
    x = x.clamp(0, 1)
    return x.expand(3, *x.shape[1:]) if x.shape[0] == 1 else x


def write_y4m(
    path: str | os.PathLike[str],
    video: torch.Tensor | Planes,
    rate: Rate,
    *,
    chroma: str = "420",
    bit_depth: int = 8,
    full_range: bool = False,
    overwrite: bool = False,
) -> None:
    """Write a video as a YUV4MPEG2 file, atomically.

    ``video`` is RGB ``(C, T, H, W)`` in ``[0, 1]``, converted to 8-bit limited-range BT.601 with
    ``chroma`` "420" (needs even H and W) or "444"; or a tuple of planes ``(Y, U, V)`` as
    ``read_y4m(..., rgb=False)`` returns them, written unchanged (their shapes give the chroma
    format: 4:2:0, 4:2:2, 4:4:4, or grey when they are empty) at ``bit_depth`` 8 or 10, tagged ``XCOLORRANGE=FULL`` when
    ``full_range``.
    """
    if bit_depth not in (8, 10):
        raise ValueError(f"Y4M is written at 8 or 10 bits, not {bit_depth}")
    path = Path(path)
    fraction = frame_rate(rate)
    if isinstance(video, tuple):
        if len(video) != 3 or any(not isinstance(p, torch.Tensor) or p.ndim != 3 for p in video):
            raise ValueError("planes must be a tuple of three (T, h, w) tensors")
        y, u, v = (p.detach().to("cpu", torch.float32) for p in video)
        frames, height, width = y.shape
        subs = {
            ((height + 1) // 2, (width + 1) // 2): "420jpeg",
            (height, (width + 1) // 2): "422",
            (height, width): "444",
        }
        tag = "mono" if u.numel() == v.numel() == 0 else subs.get(tuple(u.shape[1:]))
        if tag is None or u.shape != v.shape or u.shape[0] != frames:
            raise ValueError(f"plane shapes {y.shape}, {u.shape}, {v.shape} are not 4:2:0, 4:2:2 or 4:4:4")
    else:
        x = _check_tensor(video)
        frames, height, width = x.shape[1:]
        if bit_depth != 8 or full_range:
            raise ValueError("an RGB video is written as 8-bit limited-range YUV; give planes for more")
        if chroma == "420":
            if height % 2 or width % 2:
                raise ValueError(f"4:2:0 needs an even width and height, not {width}x{height}")
            y, u, v = _rgb_to_yuv(x, (2, 2))
            tag = "420jpeg"
        elif chroma == "444":
            y, u, v = _rgb_to_yuv(x, (1, 1))
            tag = "444"
        else:
            raise ValueError(f"chroma must be '420' or '444', not {chroma!r}")
    _check(path, frames, fraction, height, width, bit_depth)
    peak = (1 << bit_depth) - 1

    def codes(p: torch.Tensor) -> np.ndarray:
        ints = p.clamp(0, 1).mul(peak).round().reshape(frames, -1)
        if bit_depth == 8:
            return ints.to(torch.uint8).numpy()
        return ints.to(torch.int32).numpy().astype("<u2").view(np.uint8)

    body = np.concatenate(
        [np.frombuffer(b"FRAME\n", np.uint8)[None].repeat(frames, 0), codes(y), codes(u), codes(v)], axis=1
    )
    if bit_depth > 8:
        tag = tag.removesuffix("jpeg") + f"p{bit_depth}"
    extra = " XCOLORRANGE=FULL" if full_range else ""
    header = (
        f"YUV4MPEG2 W{width} H{height} F{fraction.numerator}:{fraction.denominator} Ip A1:1 C{tag}{extra}\n"
    )
    write_atomic(path, header.encode("ascii") + body.tobytes(), overwrite=overwrite)


def write_video(
    path: str | os.PathLike[str],
    video: torch.Tensor | Planes,
    rate: Rate,
    *,
    codec: str = "libx264",
    crf: int | None = CRF,
    qp: int | None = None,
    pix_fmt: str | None = None,
    overwrite: bool = False,
) -> None:
    """Write an RGB ``(C, T, H, W)`` tensor in ``[0, 1]`` as .mp4, .mkv or .mov, atomically.

    ``codec`` is an FFmpeg encoder: "libx264" (default, ``crf`` 23, yuv420p), "libx265",
    "ffv1" (lossless, bgr0: an exact RGB round trip; .mkv). ``qp=0`` with libx264 and
    ``pix_fmt="yuv444p"`` is lossless in YUV. .y4m goes to :func:`write_y4m`.

    ``video`` may also be 8-bit limited-range 4:2:0 planes ``(Y, U, V)`` (as ``read_y4m(...,
    rgb=False)`` gives them): they go to the encoder as they are, yuv420p (``qp=0`` with libx264:
    lossless), with no RGB round trip; other planes are converted to RGB first.
    """
    path = Path(path)
    if path.suffix.lower() == ".y4m":
        write_y4m(path, video, rate, overwrite=overwrite)
        return
    fmt = WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UnsupportedMediaError(
            f"cannot write {path}: unknown video extension {path.suffix!r} ({', '.join((*WRITE_FORMATS, '.y4m'))})"
        )
    fraction = frame_rate(rate)
    planar = None
    if isinstance(video, tuple):
        y, u, v = (p.detach().to("cpu", torch.float32) for p in video)
        frames, height, width = y.shape
        if not height % 2 and not width % 2 and u.shape == v.shape == (frames, height // 2, width // 2):
            planar = [
                np.concatenate(
                    [p[t].clamp(0, 1).mul(255).round().to(torch.uint8).numpy().ravel() for p in (y, u, v)]
                ).reshape(-1, width)
                for t in range(frames)
            ]
            pix_fmt = "yuv420p"
        else:
            video = yuv_to_rgb((y, u, v))
    x = None if planar is not None else _check_tensor(video)
    if x is not None:
        frames, height, width = x.shape[1:]
    _check(path, frames, fraction, height, width, 8)
    if pix_fmt is None:
        pix_fmt = "bgr0" if codec == "ffv1" else "yuv420p"
    if pix_fmt in ("yuv420p", "yuv422p") and (width % 2 or (height % 2 and pix_fmt == "yuv420p")):
        raise ValueError(f"{pix_fmt} needs an even width and height, not {width}x{height}")
    import av

    if planar is None:
        array = x.mul(255).round().to(torch.uint8).permute(1, 2, 3, 0).contiguous().numpy()  # (T, H, W, 3)
        pictures = [av.VideoFrame.from_ndarray(picture, format="rgb24") for picture in array]
    else:
        pictures = [av.VideoFrame.from_ndarray(picture, format="yuv420p") for picture in planar]
    buffer = io.BytesIO()
    try:
        with av.open(buffer, "w", format=fmt) as container:
            stream = container.add_stream(codec, rate=fraction)
            stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
            stream.codec_context.time_base = 1 / fraction
            options = {}
            if qp is not None:
                options["qp"] = str(qp)
            elif crf is not None and codec in ("libx264", "libx265"):
                options["crf"] = str(crf)
            stream.options = options
            for picture in pictures:
                for packet in stream.encode(picture):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    except (av.error.FFmpegError, ValueError, KeyError) as e:
        raise UnsupportedMediaError(f"cannot write {path} with {codec} ({pix_fmt}): {e}") from None
    write_atomic(path, buffer.getvalue(), overwrite=overwrite)
