"""``recombiner-speech`` on held-out speech, with Opus and, on RECOMBINER's own example clip, the
paper's decoded examples scored the same way.

Clips: the LibriSpeech utterance the priors did not see (``librispeech_5703-47212-0000``, 14.8 s,
16 kHz) and, with ``--paper DIR``, RECOMBINER's example (``ground_truth.wav``, 3 s of LibriSpeech
test-clean; the folder also holds the paper's ``decoded_<kbps>kbps_<dB>dB.wav`` at 5.17, 10.81 and
22.11 kbit/s). Make that folder from the MIT-licensed reference repository:

    git clone https://github.com/cambridge-mlg/RECOMBINER && cp RECOMBINER/examples/*.wav DIR/

Each row (appended to ``--rows`` as it is measured; a restart skips what is there): kbit/s of the
complete file (the paper's rows: the rate its file name states; its bitstreams are not published),
SNR and SI-SDR, and PESQ (wide band), STOI and ViSQOL v3 in speech mode
(:func:`neurocodec.evaluation.metrics.perceptual_scores`), encode seconds on one thread.

    OMP_NUM_THREADS=1 python eval/recombiner_speech.py --paper /tmp/rcex --effort 500
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import tempfile
from pathlib import Path

import torch

from common import DATA, append_row, read_rows
from neurocodec.evaluation.baselines import evaluate_baseline
from neurocodec.evaluation.rows import evaluate_audio, rd_row
from neurocodec.io.audio import read_audio

HERE = Path(__file__).resolve().parent
HELD_OUT = DATA / "audio/speech/librispeech_16k/librispeech_5703-47212-0000.wav"
PAPER_CLIP = "recombiner_paper_ground_truth.wav"
OPUS = (6, 8, 12, 16, 24)


def stage(folder: Path, paper: Path | None) -> list[Path]:
    """The clips, copied into ``folder``/speech (the metrics score a path that names speech as speech)."""
    out = folder / "speech"
    out.mkdir()
    clips = [Path(shutil.copy(HELD_OUT, out))]
    if paper is not None:
        clips.append(Path(shutil.copy(paper / "ground_truth.wav", out / PAPER_CLIP)))
    return clips


def paper_rows(paper: Path, clip: Path) -> list[dict]:
    """The paper's decoded examples against its ground truth, at the rates their names state."""
    x, info = read_audio(clip)
    rows = []
    for f in sorted(paper.glob("decoded_*kbps_*dB.wav")):
        kbps = float(re.match(r"decoded_([\d.]+)kbps", f.name).group(1))
        x_hat, _ = read_audio(f)
        row = rd_row(clip, x, b"", x_hat, float("nan"), float("nan"), sample_rate=info.sample_rate)
        row.update(kbps=kbps, bytes=None, setting=kbps, source=f.name)
        rows.append(row)
    return rows


def codec_rows(name: str, quality: int, clip: Path, effort: int) -> dict:
    import neurocodec as nc

    codec = nc.load(name, quality)
    codec.progress = False
    (row,) = evaluate_audio(codec, [clip], effort=effort)
    return {**row, "setting": quality, "effort": effort, "kl_bpp_fit": codec.last_fit.get("kl_bpp_fit")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--paper", type=Path, default=None, help="folder of RECOMBINER's example WAVs")
    ap.add_argument("--qualities", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--effort", type=int, default=500, help="fitting iterations (the medium preset: 500)")
    ap.add_argument("--opus", type=float, nargs="+", default=list(OPUS), help="Opus kbit/s")
    ap.add_argument("--rows", type=Path, default=HERE / "recombiner_speech.jsonl")
    args = ap.parse_args()
    torch.set_num_threads(1)
    have = {(r["file"], r["codec"], r["setting"], r.get("effort")) for r in read_rows(args.rows)}

    def add(row: dict) -> None:
        append_row(args.rows, row)
        print(json.dumps(row), flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        for clip in stage(Path(tmp), args.paper):
            if clip.name == PAPER_CLIP:
                for row in paper_rows(args.paper, clip):
                    if (clip.name, "recombiner-paper", row["setting"], None) not in have:
                        add({"codec": "recombiner-paper", **row})
            for q in args.qualities:
                if (clip.name, "recombiner-speech", q, args.effort) not in have:
                    add(
                        {
                            "codec": "recombiner-speech",
                            **codec_rows("recombiner-speech", q, clip, args.effort),
                        }
                    )
            for kbps in args.opus:
                if (clip.name, "opus", kbps, None) not in have:
                    (row,) = evaluate_baseline("opus", [clip], [kbps])
                    add({"codec": "opus", **row})


if __name__ == "__main__":
    main()
