"""Codec speed on one Kodak image: our `hyperprior` vs CompressAI's `mbt2018-mean`, same run.

Both models have the same architecture and channel counts (N=128, M=192). Encode and decode
are timed end to end (file bytes in and out for ours, CompressAI's `compress`/`decompress`
strings for theirs), and the parts are timed directly: the transforms (g_a + h_a, g_s), the hyper-synthesis h_s (our
exact integer float64 one; their float32 one), and the entropy coding proper (z and y streams
with their table indexes, encode + decode). "Entropy part" = coding + h_s on both sides.

Neither model has trained weights here (no CompressAI download; ours are not trained at
this size yet), so both run with initial weights and freshly built tables: the speeds are
representative, the file sizes are not. Untrained latents are smaller in magnitude than
trained ones, which flatters nobody in particular: both code the same tensor shapes.

    python eval/bench_codec.py [--image PATH] [--reps 3] [--threads N] [--out eval/bench_codec.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_IMAGE = ROOT.parent / "shared" / "data" / "kodak" / "kodim01.png"


def best(fn, reps: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", default=str(DEFAULT_IMAGE))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--out", default=str(ROOT / "eval" / "bench_codec.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    from compressai.models import MeanScaleHyperprior as TheirModel

    from neurocodec.codecs.hyperprior import HyperpriorCodec
    from neurocodec.io.image import read_image

    x, _ = read_image(args.image)
    xb = x.unsqueeze(0)
    h, w = x.shape[-2:]
    if h % 64 or w % 64:
        print("CompressAI needs sides that are multiples of 64", file=sys.stderr)
        return 2

    ours = HyperpriorCodec(N=128, M=192, quality=1).eval()
    ours.model.update_tables()
    theirs = TheirModel(N=128, M=192).eval()
    theirs.update(force=True)

    rows = {}
    with torch.inference_mode():
        # ours: end to end (complete files), then the entropy part's steps timed directly
        t_enc, data = best(lambda: ours.encode(x), args.reps)
        t_dec, _ = best(lambda: ours.decode(data), args.reps)
        m = ours.model
        t_ga, _ = best(lambda: m.h_a(m.g_a(xb)), args.reps)
        y = m.g_a(xb)
        z = m.h_a(y)
        t_gs, _ = best(lambda: m.g_s(y), args.reps)
        z_hat = torch.round(z)
        t_hs, (index, means) = best(lambda: m.prior(z_hat), args.reps)
        t_code_enc, (zs, ys) = best(
            lambda: (m.entropy_bottleneck.compress(z), m.gaussian.compress(y, index, means)), args.reps
        )
        t_code_dec, _ = best(
            lambda: (
                m.entropy_bottleneck.decompress(zs, z.shape),
                m.gaussian.decompress(ys, index, means),
            ),
            args.reps,
        )
        rows["neurocodec hyperprior"] = {
            "encode_s": t_enc, "decode_s": t_dec, "analysis_s": t_ga, "synthesis_s": t_gs,
            "hyper_synthesis_s": t_hs, "coding_only_s": t_code_enc + t_code_dec, "bytes": len(data),
        }  # fmt: skip
        # CompressAI, the same steps as its compress()/decompress() perform them
        t_enc, out = best(lambda: theirs.compress(xb), args.reps)
        t_dec, _ = best(lambda: theirs.decompress(out["strings"], out["shape"]), args.reps)
        t_ga, _ = best(lambda: theirs.h_a(theirs.g_a(xb)), args.reps)
        y = theirs.g_a(xb)
        z = theirs.h_a(y)
        t_gs, _ = best(lambda: theirs.g_s(y), args.reps)
        z_strings = theirs.entropy_bottleneck.compress(z)
        z_hat = theirs.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
        t_hs, gaussian_params = best(lambda: theirs.h_s(z_hat), args.reps)
        scales_hat, means_hat = gaussian_params.chunk(2, 1)
        gc = theirs.gaussian_conditional

        def their_code_enc():
            zs = theirs.entropy_bottleneck.compress(z)
            indexes = gc.build_indexes(scales_hat)
            return zs, indexes, gc.compress(y, indexes, means=means_hat)

        t_code_enc, (zs, _indexes, ys) = best(their_code_enc, args.reps)

        def their_code_dec():
            theirs.entropy_bottleneck.decompress(zs, z.shape[-2:])
            return gc.decompress(ys, gc.build_indexes(scales_hat), means=means_hat)

        t_code_dec, _ = best(their_code_dec, args.reps)
        rows["compressai mbt2018-mean"] = {
            "encode_s": t_enc, "decode_s": t_dec, "analysis_s": t_ga, "synthesis_s": t_gs,
            "hyper_synthesis_s": t_hs, "coding_only_s": t_code_enc + t_code_dec,
            "bytes": sum(len(s[0]) for s in out["strings"]),
        }  # fmt: skip

    for r in rows.values():
        # the entropy part: entropy coding with its table indexes, plus h_s once on each side
        r["entropy_total_s"] = r["coding_only_s"] + 2 * r["hyper_synthesis_s"]
        r["end_to_end_s"] = r["encode_s"] + r["decode_s"]
    a, b = rows["neurocodec hyperprior"], rows["compressai mbt2018-mean"]
    ratios = {
        "entropy part, compressai / ours (target >= 8)": b["entropy_total_s"] / a["entropy_total_s"],
        "end to end, compressai / ours (target >= 1.3)": b["end_to_end_s"] / a["end_to_end_s"],
        "coding only (no h_s), compressai / ours": b["coding_only_s"] / a["coding_only_s"],
        "h_s, compressai float32 / ours exact float64": b["hyper_synthesis_s"] / a["hyper_synthesis_s"],
    }
    result = {
        "benchmark": "eval/bench_codec.py",
        "command": "python " + " ".join(sys.argv),
        "image": Path(args.image).name,
        "size": [h, w],
        "threads": args.threads,
        "reps": args.reps,
        "weights": "initial (untrained) weights for both; speeds only",
        "machine": {"platform": platform.platform(), "cpu_count": torch.get_num_threads()},
        "versions": {"torch": torch.__version__},
        "rows": rows,
        "ratios": ratios,
    }
    for name, r in rows.items():
        print(
            f"{name:26s} encode {r['encode_s'] * 1e3:7.1f} ms  decode {r['decode_s'] * 1e3:7.1f} ms  "
            f"entropy part {r['entropy_total_s'] * 1e3:7.1f} ms (h_s {r['hyper_synthesis_s'] * 1e3:6.1f} ms x2)  transforms "
            f"{(r['analysis_s'] + r['synthesis_s']) * 1e3:7.1f} ms"
        )
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}x")
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
