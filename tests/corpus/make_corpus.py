"""Write the corpus of files a release produces, with their decoded outputs (run once per release).

    python tests/corpus/make_corpus.py 0.1.0

writes ``tests/corpus/<release>/``: for every shipped codec and quality, a file coded from a
small crop of Kodak (images, an odd size so that padding is exercised) or a 0.1 s excerpt of a
music clip (audio), one file per adaptive codec written with ``effort`` > 0, the decoded output
of each file as float32 ``.npy``, and ``manifest.json`` (the commit that wrote them, each file's
codec, quality, effort and SHA-256). ``tests/test_corpus.py`` decodes every release's files on
every change and compares them with these outputs: a file a release wrote is a promise.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

import neurocodec as nc
from neurocodec.io.audio import read_audio
from neurocodec.io.image import read_image

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[2] / "shared" / "data"
IMAGE = DATA / "kodak" / "kodim23.png"
MUSIC = DATA / "audio" / "music" / "music_vibe_ace_kevin_macleod_000-030s.wav"
EFFORT = 2


def _inputs() -> dict[str, torch.Tensor]:
    image, _ = read_image(IMAGE)
    audio, info = read_audio(MUSIC)
    start = 10 * info.sample_rate
    return {"image": image[:, 200:250, 300:370].contiguous(),
            "audio": audio[:, start:start + info.sample_rate // 10].contiguous()}


def main(release: str) -> None:
    out = HERE / release
    out.mkdir(parents=True, exist_ok=False)
    inputs = _inputs()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                            cwd=HERE).stdout.strip()
    entries = []
    for info in nc.list_codecs():
        for quality in info.qualities:
            codec = nc.load(info.name, quality=quality)
            efforts = [0, EFFORT] if codec.adaptive and codec.lmbda is not None and quality == min(info.qualities) else [0]
            for effort in efforts:
                torch.manual_seed(0)
                data = codec.encode(inputs[info.media], effort=effort)
                stem = f"{info.name}-q{quality}" + (f"-effort{effort}" if effort else "")
                (out / f"{stem}.ncd").write_bytes(data)
                np.save(out / f"{stem}.npy", nc.decode(data).numpy().astype(np.float32))
                entries.append({"file": f"{stem}.ncd", "output": f"{stem}.npy", "codec": info.name,
                                "quality": quality, "effort": effort,
                                "sha256": hashlib.sha256(data).hexdigest()})
                print(stem, len(data), "bytes")
    manifest = {"release": release, "commit": commit, "files": entries}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1])
