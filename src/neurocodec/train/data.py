"""Training data: decoded once, kept in memory (or on the GPU), cropped on the device.

No input pipeline to stall: every file of the folder is decoded once into a tensor on the
training device, and each batch is a set of random crops taken there, driven by the trainer's
one seeded generator (so a resumed run continues the same sequence).

- :class:`ImageCrops`: ``crop`` x ``crop`` RGB crops with horizontal flips;
- :class:`AudioClips`: ``samples``-long clips with a random gain and, for stereo, a random
  channel swap;
- :class:`VideoClips`: ``frames`` consecutive frames, ``crop`` x ``crop``, with horizontal flips.

Each also gives a fixed :meth:`validation_batch` (the centre crop of every item), which the
trainer uses when the set is a held-out validation set. A folder argument may also be a list
of files (a held-out split); a folder's files are listed by :mod:`neurocodec.io.files`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from neurocodec.io import files

__all__ = ["AudioClips", "ImageCrops", "VideoClips"]

Files = str | Path | Sequence[str | Path]


def _paths(root: Files, lister) -> list[Path]:
    return lister(root) if isinstance(root, str | Path) else [Path(f) for f in root]


def _flip(generator: torch.Generator) -> bool:
    return bool(torch.randint(2, (1,), generator=generator))


def _rows(size: int, rows: range | None) -> range:
    """The rows of a batch of ``size`` to materialize: all of them, or a checked slice."""
    if rows is None:
        return range(size)
    if rows.step != 1 or not 0 <= rows.start <= rows.stop <= size:
        raise ValueError(f"rows {rows} are not a contiguous slice of a batch of {size}")
    return rows


def _offset(room: int, generator: torch.Generator) -> int:
    """A random start in ``[0, room]``."""
    return int(torch.randint(room + 1, (1,), generator=generator))


class ImageCrops:
    """Random ``crop`` x ``crop`` RGB crops (with horizontal flips) of images held in memory.

    Images smaller than the crop on either side are skipped (and counted in ``skipped``).
    """

    def __init__(self, root: Files, crop: int = 256, device: str | torch.device = "cpu"):
        self.crop = crop
        self.device = torch.device(device)
        self.images: list[torch.Tensor] = []
        self.skipped = 0
        for path in _paths(root, files.image_files):
            with Image.open(path) as im:
                rgb = im.convert("RGB")
            if min(rgb.size) < crop:
                self.skipped += 1
                continue
            t = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8).view(rgb.height, rgb.width, 3)
            self.images.append(t.permute(2, 0, 1).contiguous().to(self.device))
        if not self.images:
            raise ValueError(f"no image under {root} is at least {crop} px on both sides")

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, size: int, generator: torch.Generator, rows: range | None = None) -> torch.Tensor:
        """``size`` random crops as float32 in [0, 1], shape ``(size, 3, crop, crop)``, on the device;
        only the ``rows`` of them when given (the generator moves as for all ``size``)."""
        rows = _rows(size, rows)
        picks = torch.randint(len(self.images), (size,), generator=generator).tolist()
        out = torch.empty(len(rows), 3, self.crop, self.crop, dtype=torch.uint8, device=self.device)
        for k, i in enumerate(picks):
            img = self.images[i]
            h, w = img.shape[1:]
            top = _offset(h - self.crop, generator)
            left = _offset(w - self.crop, generator)
            flip = _flip(generator)
            if k in rows:
                crop = img[:, top : top + self.crop, left : left + self.crop]
                out[k - rows.start] = crop.flip(-1) if flip else crop
        return out.float().div_(255.0)

    def validation_batch(self) -> torch.Tensor:
        """The centre crop of every image, ``(len, 3, crop, crop)`` in [0, 1]."""
        crops = []
        for img in self.images:
            top, left = (img.shape[1] - self.crop) // 2, (img.shape[2] - self.crop) // 2
            crops.append(img[:, top : top + self.crop, left : left + self.crop])
        return torch.stack(crops).float().div_(255.0)


class AudioClips:
    """Random clips of ``samples`` samples, ``(C, samples)`` in [-1, 1], of audio held in memory.

    Files are read with :func:`neurocodec.io.audio.read_audio`. All clips have the sample rate
    and channel count of the first file unless ``sample_rate`` / ``channels`` say otherwise:
    files at another rate, and files shorter than a clip, are skipped (counted in ``skipped``);
    mono files are repeated into every channel, and files with more channels are averaged down.
    Augmentation: a gain drawn uniformly in ``[-gain_db, 0]`` dB (an attenuation, so nothing
    clips) and, for stereo, a swap of the two channels half of the time.
    """

    def __init__(
        self,
        root: Files,
        samples: int = 16384,
        device: str | torch.device = "cpu",
        *,
        sample_rate: int | None = None,
        channels: int | None = None,
        gain_db: float = 6.0,
    ):
        from neurocodec.io.audio import read_audio

        self.samples, self.gain_db = samples, gain_db
        self.device = torch.device(device)
        self.clips: list[torch.Tensor] = []
        self.skipped = 0
        for path in _paths(root, files.audio_files):
            audio, info = read_audio(path)
            if sample_rate is None:
                sample_rate = info.sample_rate
            if channels is None:
                channels = info.channels
            if info.sample_rate != sample_rate or audio.shape[1] < samples:
                self.skipped += 1
                continue
            if audio.shape[0] != channels:
                audio = audio.mean(0, keepdim=True).expand(channels, -1)
            self.clips.append(audio.contiguous().to(self.device))
        if not self.clips:
            raise ValueError(f"no audio file under {root} at {sample_rate} Hz holds {samples} samples")
        self.sample_rate, self.channels = sample_rate, channels

    def __len__(self) -> int:
        return len(self.clips)

    def batch(self, size: int, generator: torch.Generator, rows: range | None = None) -> torch.Tensor:
        """``size`` random clips, float32 ``(size, channels, samples)``, on the device; only the
        ``rows`` of them when given (the generator moves as for all ``size``)."""
        rows = _rows(size, rows)
        picks = torch.randint(len(self.clips), (size,), generator=generator).tolist()
        out = torch.empty(len(rows), self.channels, self.samples, device=self.device)
        for k, i in enumerate(picks):
            audio = self.clips[i]
            start = _offset(audio.shape[1] - self.samples, generator)
            gain = 10 ** (-self.gain_db * float(torch.rand(1, generator=generator)) / 20)
            swap = _flip(generator) and self.channels == 2
            if k in rows:
                clip = audio[:, start : start + self.samples]
                out[k - rows.start] = (clip.flip(0) if swap else clip) * gain
        return out

    def validation_batch(self) -> torch.Tensor:
        """The middle ``samples`` of every file at unit gain, ``(len, channels, samples)``."""
        starts = [(a.shape[1] - self.samples) // 2 for a in self.clips]
        return torch.stack([a[:, s : s + self.samples] for a, s in zip(self.clips, starts, strict=True)])


class VideoClips:
    """Random ``frames``-frame, ``crop`` x ``crop`` RGB clips ``(3, frames, crop, crop)`` in
    [0, 1] (with horizontal flips) of videos held in memory as 8-bit RGB.

    Files are read with :func:`neurocodec.io.video.read_video` (Y4M natively, MP4/MKV/... through
    PyAV), at most ``max_frames`` frames of each (all by default). Videos shorter than a clip or
    smaller than the crop are skipped (counted in ``skipped``).
    """

    def __init__(
        self,
        root: Files,
        frames: int = 4,
        crop: int = 256,
        device: str | torch.device = "cpu",
        *,
        max_frames: int | None = None,
    ):
        from neurocodec.io.video import read_video

        self.frames, self.crop = frames, crop
        self.device = torch.device(device)
        self.videos: list[torch.Tensor] = []
        self.paths: list[Path] = []  # of the videos kept
        self.texts: list[torch.Tensor] | None = None  # a caption's embedding per video: see caption()
        self.skipped = 0
        for path in _paths(root, files.video_files):
            video, _ = read_video(path, max_frames=max_frames)
            if video.shape[1] < frames or min(video.shape[2:]) < crop:
                self.skipped += 1
                continue
            self.videos.append(video.mul_(255).round_().to(torch.uint8).to(self.device))
            self.paths.append(Path(path))
        if not self.videos:
            raise ValueError(f"no video under {root} has {frames} frames of at least {crop} px on both sides")

    def __len__(self) -> int:
        return len(self.videos)

    def caption(self, captions: dict[str, str], embed) -> None:
        """Give every video its caption, ``captions[file name]`` embedded by ``embed`` (``str ->
        (L, dim)``), for :meth:`text_batch`; ValueError naming the videos without one."""
        missing = [p.name for p in self.paths if p.name not in captions]
        if missing:
            raise ValueError(f"no caption for {', '.join(missing)}")
        self.texts = [embed(captions[p.name]).to(self.device) for p in self.paths]

    def batch(self, size: int, generator: torch.Generator, rows: range | None = None) -> torch.Tensor:
        """``size`` random clips, float32 ``(size, 3, frames, crop, crop)`` in [0, 1], on the device;
        only the ``rows`` of them when given (the generator moves as for all ``size``)."""
        return self._draw(size, generator, rows)[0]

    def text_batch(
        self, size: int, generator: torch.Generator, rows: range | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`batch` (the same clips for the same generator state) and the embeddings of
        their videos' captions ``(size, L, dim)``."""
        if self.texts is None:
            raise ValueError("these videos have no captions: call caption() first")
        clips, picks = self._draw(size, generator, rows)
        return clips, torch.stack([self.texts[i] for i in picks])

    def validation_text(self) -> torch.Tensor:
        """The caption embeddings of :meth:`validation_batch`'s clips ``(len, L, dim)``."""
        if self.texts is None:
            raise ValueError("these videos have no captions: call caption() first")
        return torch.stack(self.texts)

    def _draw(
        self, size: int, generator: torch.Generator, rows: range | None
    ) -> tuple[torch.Tensor, list[int]]:
        """The clips of :meth:`batch` and the video each of them comes from."""
        rows = _rows(size, rows)
        picks = torch.randint(len(self.videos), (size,), generator=generator).tolist()
        out = torch.empty(
            len(rows), 3, self.frames, self.crop, self.crop, dtype=torch.uint8, device=self.device
        )
        for k, i in enumerate(picks):
            video = self.videos[i]
            t, h, w = video.shape[1:]
            first = _offset(t - self.frames, generator)
            top = _offset(h - self.crop, generator)
            left = _offset(w - self.crop, generator)
            flip = _flip(generator)
            if k in rows:
                clip = video[:, first : first + self.frames, top : top + self.crop, left : left + self.crop]
                out[k - rows.start] = clip.flip(-1) if flip else clip
        return out.float().div_(255.0), [picks[k] for k in rows]

    def validation_batch(self) -> torch.Tensor:
        """The first ``frames`` frames of every video, centre crop, ``(len, 3, frames, crop, crop)``."""
        clips = []
        for v in self.videos:
            top, left = (v.shape[2] - self.crop) // 2, (v.shape[3] - self.crop) // 2
            clips.append(v[:, : self.frames, top : top + self.crop, left : left + self.crop])
        return torch.stack(clips).float().div_(255.0)
