"""Peak memory of a decode against the size of what it decodes: the constant behind the resource
limits (container.Limits, docs/bitstream.md §5 "Resource limits").

For each shipped codec (default quality) and each size (images, audio, and video: QCIF
carphone at 8, 16 and 32 frames and 8 frames of 720p Big Buck Bunny), a fresh process loads the
codec, decodes
a small file (so lazy initialisation is not counted), then decodes a file of that size; it reports
the RSS before that decode and the peak RSS during it (Linux: VmHWM, reset through
/proc/self/clear_refs just before). Fitting ``increase = fixed + per_sample * samples`` (samples:
C·H·W or channels·length) over the sizes gives the bound docs/bitstream.md states:
a decode's peak is at most ``rss_loaded + fixed + per_sample * samples``.

    python eval/decode_memory.py [--codecs ...] [--threads 1] [--out eval/decode_memory.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
IMAGE_SIZES = ((256, 384), (512, 768), (1024, 1536))  # (H, W): a crop, Kodak, Kodak tiled 2x2
AUDIO_SECONDS = (2, 8, 30)
VIDEO_CLIPS = (  # (clip, frames): QCIF at three lengths, then 720p
    ("carphone_qcif_176x144_30000-1001fps_i420_120f.y4m", 8),
    ("carphone_qcif_176x144_30000-1001fps_i420_120f.y4m", 16),
    ("carphone_qcif_176x144_30000-1001fps_i420_120f.y4m", 32),
    ("bigbuckbunny_1280x720_25fps_132f_h264.mp4", 8),
)
CODECS = (
    "hyperprior,mlic,walloc-image,walloc-audio,c3,vqgan,recombiner-image,recombiner-audio,nirvana,video-vae"
)
# the codecs that fit each input (those with effort presets) fit this many iterations: a file as
# large as a real fit's to decode (the decoder's work depends on the geometry and the networks'
# shapes, not on how well they fit)
FIT_EFFORT = 10


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def peak_mb() -> float:
    """The peak RSS since the last :func:`reset_peak` (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def measure(codec_name: str, small: str, big: str, threads: int) -> dict:
    """In this process: the RSS before decoding ``big`` and the peak after (MiB)."""
    import torch

    import neurocodec as nc

    torch.set_num_threads(threads)
    codec = nc.load(codec_name)
    codec.decode(Path(small).read_bytes())
    data = Path(big).read_bytes()
    before = rss_mb()
    reset_peak()
    out = codec.decode(data, nc.NO_LIMITS)
    peak = peak_mb()
    return {
        "samples": out.numel(),
        "shape": list(out.shape),
        "file_bytes": len(data),
        "rss_before_mb": round(before, 1),
        "peak_mb": round(peak, 1),
        "increase_mb": round(peak - before, 1),
    }


def fit(rows: list[dict]) -> dict:
    """``increase = fixed + per_sample * samples``, bounding every row: the steepest slope between
    two sizes, then the smallest intercept that covers all of them."""
    per_sample = max(
        (b["increase_mb"] - a["increase_mb"]) * 2**20 / (b["samples"] - a["samples"])
        for i, a in enumerate(rows)
        for b in rows[i + 1 :]
    )
    fixed = max(r["increase_mb"] - per_sample * r["samples"] / 2**20 for r in rows)
    return {"bytes_per_sample": round(per_sample, 1), "fixed_mb": round(max(fixed, 0.0), 1)}


def inputs(media: str):
    """(label, tensor, encode keywords) of every size, largest last."""
    if media == "video":
        from neurocodec.io import read_codec_input

        out = []
        for clip, frames in VIDEO_CLIPS:
            x, options = read_codec_input(DATA / "video" / clip, "video", max_frames=frames)
            out.append((f"{x.shape[-1]}x{x.shape[-2]}x{frames}", x, options))
        return out
    if media == "audio":
        from neurocodec.io.audio import read_audio

        x, _ = read_audio(DATA / "audio" / "music" / "music_hungarian_dance_no5_us_army_strings_000-030s.wav")
        return [(f"{s} s", x[:, : s * 44100], {}) for s in AUDIO_SECONDS]
    import torch

    from neurocodec.io.image import read_image

    x, _ = read_image(DATA / "kodak" / "kodim23.png")  # 512x768
    big = torch.cat([torch.cat([x, x.flip(-1)], -1), torch.cat([x.flip(-2), x], -1)], -2)
    return [(f"{h}x{w}", big[:, :h, :w], {}) for h, w in IMAGE_SIZES]


def smallest(x, media: str):
    """A small input of the same kind (decoded first, so that lazy initialisation is not counted)."""
    if media == "audio":
        return x[..., :64]
    if media == "video":
        return x[:, :2, :64, :64]
    return x[:, :64, :64]


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(measure(*sys.argv[2:5], int(sys.argv[5]))))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--codecs", default=CODECS)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "eval" / "decode_memory.json"))
    args = ap.parse_args()

    import neurocodec as nc

    out = Path(args.out)
    report = {"benchmark": "eval/decode_memory.py", "command": "python " + " ".join(sys.argv), "codecs": []}
    if out.exists():  # a rerun for some codecs keeps the others' rows
        kept = json.loads(out.read_text())["codecs"]
        report["codecs"] = [c for c in kept if c["codec"].split(" ")[0] not in args.codecs.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.codecs.split(","):
            codec = nc.load(name)
            codec.progress = False
            effort = FIT_EFFORT if codec.presets else 0
            sizes = inputs(codec.media)
            small = Path(tmp, f"{name}-small.ncd")
            small.write_bytes(codec.encode(smallest(sizes[0][1], codec.media), effort=effort, **sizes[0][2]))
            rows = []
            for label, x, options in sizes:
                big = Path(tmp, f"{name}-{label.replace(' ', '')}.ncd")
                big.write_bytes(codec.encode(x, effort=effort, **options))
                done = subprocess.run(
                    [sys.executable, __file__, "--child", name, str(small), str(big), str(args.threads)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                row = {"size": label, **json.loads(done.stdout.strip().splitlines()[-1])}
                rows.append(row)
                print(name, json.dumps(row), flush=True)
            entry = {
                "codec": f"{codec.name} q{codec.quality}",
                "command": report["command"],
                "sizes": rows,
                **fit(rows),
            }
            if effort:
                entry["encode_effort"] = effort
            report["codecs"].append(entry)
            out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
