"""The `mlic` codec's float transforms in the channels-last memory format against the default
(contiguous) one: encode and decode of one Kodak image, same process, interleaved repetitions.

The codec runs ``g_a``, the LRP and ``g_s`` channels-last (:mod:`neurocodec.codecs.mlic`). This
switches the same codec object between the two layouts (the transforms' weights and the
inputs the codec hands them), so both see the same weights, file and machine load. It also
records whether the two layouts write the same file, and how many 8-bit values of the decoded
image differ (the float synthesis may differ in its last bits).

    python eval/archive/bench_mlic_layout.py [--image PATH] [--reps 5] [--out eval/archive/bench_mlic_layout.json]

Archived: the A/B behind one past change (mlic's float transforms run channels-last since
0.1.0); kept to re-measure that choice on another machine. See eval/README.md and CHANGELOG.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

import neurocodec as nc
import neurocodec.codecs.mlic as mlic_codec
from neurocodec.io.image import read_image

ROOT = Path(__file__).resolve().parents[2]
LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def use_layout(codec: mlic_codec.MLICCodec, layout: torch.memory_format) -> None:
    mlic_codec.CHANNELS_LAST = layout  # what the codec converts its inputs to
    for transform in (codec.model.g_a, codec.model.latent_codec.residual_prediction, codec.model.g_s):
        transform.to(memory_format=layout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=str(ROOT.parent / "shared" / "data" / "kodak" / "kodim01.png"))
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "eval" / "archive" / "bench_mlic_layout.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    x, _ = read_image(args.image)

    small = mlic_codec.MLICCodec("small")
    small.model.update_tables()
    codecs = {"shipped mlic q3 (tiny)": nc.load("mlic", 3), "small preset (initial weights)": small.eval()}
    load_before = os.getloadavg()
    rows = {}
    for label, codec in codecs.items():
        data = codec.encode(x)
        times = {name: {"encode": [], "decode": []} for name in LAYOUTS}
        files, pixels = {}, {}  # each layout's file of x, and its decode of the shared file
        for rep in range(args.reps + 1):  # the first round warms up
            for name, layout in LAYOUTS.items():
                use_layout(codec, layout)
                t0 = time.perf_counter()
                files[name] = codec.encode(x)
                t1 = time.perf_counter()
                pixels[name] = codec.decode(data).mul(255).round()
                t2 = time.perf_counter()
                if rep:
                    times[name]["encode"].append(t1 - t0)
                    times[name]["decode"].append(t2 - t1)
        best = {name: {k: min(v) for k, v in t.items()} for name, t in times.items()}
        rows[label] = {
            "best_s": best,
            "speedup": {k: best["contiguous"][k] / best["channels_last"][k] for k in ("encode", "decode")},
            "same_file_bytes": files["contiguous"] == files["channels_last"],
            "decoded_8bit_values_differing": int((pixels["contiguous"] != pixels["channels_last"]).sum()),
            "decoded_8bit_values": pixels["contiguous"].numel(),
            "decoded_8bit_max_difference": float(
                (pixels["contiguous"] - pixels["channels_last"]).abs().max()
            ),
        }
        use_layout(codec, torch.channels_last)
        speed = rows[label]["speedup"]
        print(
            f"{label}: encode {best['contiguous']['encode']:.3f} -> {best['channels_last']['encode']:.3f} s "
            f"({speed['encode']:.2f}x), decode {best['contiguous']['decode']:.3f} -> "
            f"{best['channels_last']['decode']:.3f} s ({speed['decode']:.2f}x)"
        )
    result = {
        "benchmark": "eval/archive/bench_mlic_layout.py",
        "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "image": Path(args.image).name,
        "threads": args.threads,
        "reps": args.reps,
        "statistic": "best of the interleaved repetitions, after one warm-up round",
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "machine": platform.platform(),
        "torch": torch.__version__,
        "rows": rows,
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
