"""Decode thousands of corrupted variants of a real file: no crash, no hang, no silent wrong output.

A variant is the file with one kind of damage: a flipped byte, a few random bytes overwritten,
a truncation, an inserted or deleted byte, or a swapped pair of bytes. Each is decoded with
`neurocodec.decode`'s codec; the outcome is one of
- "error": a NeurocodecError (the expected case: the CRC, a header check or the coder says no);
- "same": decoded to exactly the original reconstruction (allowed: the damage changed nothing);
- "crash": any other exception (a bug); "wrong": decoded without error to something else (a bug);
- "slow": took longer than --timeout seconds (a hang in the making).

    python eval/corrupt_files.py [--image kodim01.png] [--variants 10000] [--out eval/corrupt_files.json]

Without shipped weights it uses the hyperprior codec with its initial weights (the file format,
container and coder are what is tested, not the model).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from neurocodec.errors import NeurocodecError

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("flip", "overwrite", "truncate", "insert", "delete", "swap")


def corrupt(data: bytes, kind: str, rng: np.random.Generator) -> bytes:
    b = bytearray(data)
    n = len(b)
    if kind == "flip":
        b[rng.integers(n)] ^= int(rng.integers(1, 256))
    elif kind == "overwrite":
        for _ in range(int(rng.integers(2, 9))):
            b[rng.integers(n)] = int(rng.integers(256))
    elif kind == "truncate":
        del b[int(rng.integers(n)) :]
    elif kind == "insert":
        b.insert(int(rng.integers(n + 1)), int(rng.integers(256)))
    elif kind == "delete":
        del b[int(rng.integers(n))]
    else:  # swap two distinct bytes
        i, j = rng.choice(n, 2, replace=False)
        b[i], b[j] = b[j], b[i]
    return bytes(b)


def run(codec, data: bytes, reference: torch.Tensor, variants: int, seed: int, timeout: float) -> dict:
    rng = np.random.default_rng(seed)
    counts = {k: {"error": 0, "same": 0, "crash": 0, "wrong": 0, "slow": 0} for k in KINDS}
    problems = []
    for v in range(variants):
        kind = KINDS[v % len(KINDS)]
        bad = corrupt(data, kind, rng)
        if bad == data:
            counts[kind]["same"] += 1
            continue
        t0 = time.perf_counter()
        try:
            out = codec.decode(bad)
            outcome = "same" if torch.equal(out, reference) else "wrong"
        except NeurocodecError:
            outcome = "error"
        except Exception as e:  # a crash: the finding this script exists for
            outcome = "crash"
            problems.append({"variant": v, "kind": kind, "error": f"{type(e).__name__}: {e}"})
        if time.perf_counter() - t0 > timeout:
            outcome = "slow"
        if outcome == "wrong":
            problems.append({"variant": v, "kind": kind, "error": "decoded to a different image"})
        counts[kind][outcome] += 1
    return {"counts": counts, "problems": problems[:50]}


def load_codec():
    import neurocodec as nc

    if any(c.name == "hyperprior" for c in nc.list_codecs()):
        return nc.load("hyperprior"), "shipped weights"
    from neurocodec.codecs.hyperprior import HyperpriorCodec

    torch.manual_seed(0)
    codec = HyperpriorCodec(N=128, M=192, quality=1).eval()
    codec.model.update_tables()
    return codec, "initial weights (no shipped weights installed)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", default=str(ROOT.parent / "shared" / "data" / "kodak" / "kodim01.png"))
    ap.add_argument("--variants", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--out", default=str(ROOT / "eval" / "corrupt_files.json"))
    args = ap.parse_args()

    from neurocodec.io.image import read_image

    codec, weights = load_codec()
    x, _ = read_image(args.image)
    data = codec.encode(x)
    reference = codec.decode(data)
    t0 = time.perf_counter()
    result = run(codec, data, reference, args.variants, args.seed, args.timeout)
    totals = {
        k: sum(c[k] for c in result["counts"].values()) for k in ("error", "same", "crash", "wrong", "slow")
    }
    report = {
        "benchmark": "eval/corrupt_files.py",
        "command": "python " + " ".join(sys.argv),
        "image": Path(args.image).name,
        "file_bytes": len(data),
        "codec": f"{codec.name} q{codec.quality}, {weights}",
        "variants": args.variants,
        "seconds": round(time.perf_counter() - t0, 1),
        "totals": totals,
        **result,
    }
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(totals), f"({report['seconds']} s) -> {args.out}")
    return 0 if totals["crash"] == totals["wrong"] == totals["slow"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
