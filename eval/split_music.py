"""Split the shared music clips in time: the first two thirds of every clip to train on, the last
third held out to evaluate on, so an audio codec trained on our 95 s of music is not judged on
what it saw. A clip shorter than ``WHOLE_BELOW`` seconds (the 5.3-s trumpet loop, whose last
third is silence) is held out whole: unseen material of its own.

    python eval/split_music.py ../shared/data/audio/music runs/music-split

writes ``OUT/train/NAME.wav`` (samples ``[0, 2n/3)``) and ``OUT/test/NAME.wav`` (``[2n/3, n)``,
or the whole clip),
16-bit WAV like the sources (the cut is sample-exact, so the halves are lossless copies).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from neurocodec.io.audio import read_audio, write_audio

WHOLE_BELOW = 10.0


def split(source: Path, out: Path) -> list[Path]:
    written = []
    for path in sorted(source.glob("*.wav")):
        audio, info = read_audio(path)
        cut = 2 * audio.shape[1] // 3 if audio.shape[1] >= WHOLE_BELOW * info.sample_rate else 0
        parts = (("train", audio[:, :cut]), ("test", audio[:, cut:])) if cut else (("test", audio),)
        for part, piece in parts:
            target = out / part / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            write_audio(target, piece, info.sample_rate, overwrite=True)
            written.append(target)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    for path in split(args.source, args.out):
        print(path)


if __name__ == "__main__":
    main()
