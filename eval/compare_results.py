"""BD-rate between two runs of one codec: its curve in two ``neurocodec eval`` reports.

``neurocodec eval`` compares codecs measured in the same run. This compares one codec with
itself across runs: re-shipped weights against the previous ones, or encoding at some
``--effort`` against effort 0. Both reports must hold the codec, on the same files.

    python eval/compare_results.py ANCHOR/results.json TEST/results.json --codec walloc-audio \
        [--test-codec NAME] [--out eval/results/NAME.json]

Writes (and prints) each report's path, command and weights, the two mean curves, and the BD-rate
(pchip) and BD-quality of TEST against ANCHOR for each metric the reports carry (images: PSNR
and MS-SSIM; audio: SNR and SI-SDR; :data:`neurocodec.evaluation.METRICS`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import command, write_json
from neurocodec.evaluation import METRICS, bd_psnr, bd_rate, curve_points, overlap

MEDIA_METRICS = {"bpp": ("psnr", "ms-ssim"), "kbps": ("snr", "si-sdr")}


def codec_entry(report: dict, path: str, name: str) -> dict:
    if name not in report["codecs"]:
        raise SystemExit(f"{path} has no {name} (it has {', '.join(report['codecs'])})")
    return report["codecs"][name]


def compare(anchor_path: str, test_path: str, codec: str, test_codec: str | None = None) -> dict:
    """The comparison of ``test_codec`` (default ``codec``) in ``test_path`` against ``codec`` in ``anchor_path``."""
    reports = [json.loads(Path(p).read_text()) for p in (anchor_path, test_path)]
    files = [r["data"]["files"] for r in reports]
    if files[0] != files[1]:
        raise SystemExit("the two reports measured different files")
    entries = [
        codec_entry(reports[0], anchor_path, codec),
        codec_entry(reports[1], test_path, test_codec or codec),
    ]
    rate = "kbps" if "kbps" in entries[0]["mean"][0] else "bpp"
    out: dict = {
        "benchmark": "eval/compare_results.py",
        "command": command(),
        "files": files[0],
    }
    for role, path, report, entry in zip(
        ("anchor", "test"), (anchor_path, test_path), reports, entries, strict=True
    ):
        out[role] = {
            "report": path,
            "command": report["command"],
            "date": report["date"],
            "weights": entry.get("weights"),
            "effort": entry.get("effort", 0),
            "mean": entry["mean"],
        }
    for metric in MEDIA_METRICS[rate]:
        anchor, test = (curve_points(e["mean"], metric) for e in entries)
        if len(anchor) < 2 or len(test) < 2:
            continue
        out[metric] = {
            "bd_rate_percent": bd_rate(anchor, test),
            "bd_quality_db": bd_psnr(anchor, test),
            "quality_interval_db": overlap(anchor, test),
            "rate": METRICS[metric][0],
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("anchor", help="results.json of the anchor run")
    parser.add_argument("test", help="results.json of the test run")
    parser.add_argument("--codec", required=True, help="the codec's name in the anchor report")
    parser.add_argument("--test-codec", help="its name in the test report (default: --codec)")
    parser.add_argument("--out", help="write the comparison here as JSON")
    args = parser.parse_args()
    result = compare(args.anchor, args.test, args.codec, args.test_codec)
    for metric in MEDIA_METRICS:
        for m in MEDIA_METRICS[metric]:
            if m in result:
                r = result[m]
                print(f"{m}: BD-rate {r['bd_rate_percent']:+.2f} %, BD-quality {r['bd_quality_db']:+.3f} dB")
    if args.out:
        write_json(args.out, result)


if __name__ == "__main__":
    main()
