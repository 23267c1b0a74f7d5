"""The media files of a folder (neurocodec.io.files): what every command, the trainer and the
notebooks code or train on, so one folder means the same files everywhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from neurocodec.io import audio_files, image_files, media_files, video_files


def touch(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")


def test_files_below_a_folder_sorted_by_kind(tmp_path: Path) -> None:
    touch(tmp_path, "b.png", "a/c.JPG", "a/d.wav", "e.flac", "f.y4m", "g.txt", "h_176x144.yuv", "i.yuv")
    assert image_files(tmp_path) == [tmp_path / "a" / "c.JPG", tmp_path / "b.png"]
    assert audio_files(tmp_path) == [tmp_path / "a" / "d.wav", tmp_path / "e.flac"]
    assert video_files(tmp_path) == [tmp_path / "f.y4m", tmp_path / "h_176x144.yuv"]  # i.yuv: no size
    assert video_files(tmp_path / "i.yuv") == [tmp_path / "i.yuv"]  # named: fails when read
    assert media_files(tmp_path, "audio") == audio_files(tmp_path)
    assert image_files(tmp_path / "g.txt") == [tmp_path / "g.txt"]  # a file is itself


def test_no_files_or_an_unknown_media(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no images under"):
        image_files(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no audio files \(\.wav, \.flac\) under"):
        media_files(tmp_path, "audio")
    with pytest.raises(ValueError, match="media must be one of image, audio, video, not 'text'"):
        media_files(tmp_path, "text")
