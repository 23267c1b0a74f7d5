"""Decode thousands of corrupted variants of a real file: no crash, no hang, no silent wrong output.

A variant is the file with one kind of damage: a flipped byte, a few random bytes overwritten,
a truncation, an inserted or deleted byte, or a swapped pair of bytes. Each is decoded with
`neurocodec.decode`'s codec; the outcome is one of
- "error": a NeurocodecError (the expected case: the CRC, a header check or the coder says no);
- "same": decoded to exactly the original reconstruction (allowed: the damage changed nothing);
- "crash": any other exception (a bug); "wrong": decoded without error to something else (a bug);
- "slow": took longer than --timeout seconds (a hang in the making).

Then a second phase, "past the CRC": damage the CRC cannot see (a section's bytes or the
geometry changed, and the file re-packed with a fresh CRC), so the header checks, the range
coder and the model's decoding path meet it. See `run_past_crc` for its outcomes.

    python eval/corrupt_files.py [--codecs all] [--variants 10000] [--past-crc 1000]
        [--fit-effort 20] [--out eval/corrupt_files.json]

Each codec runs at its default quality with its shipped weights (if any), on kodim01 (images),
the solo-trumpet clip (audio) or carphone's first ``--frames`` frames (video, its Y/Cb/Cr
planes). The codecs that fit each file at encode time (c3, recombiner, nirvana) code a small
piece of it at a small effort (``--fit-*``): their decoders meet the same damage either way.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from common import DATA, EVAL, KODIM01, command, fitting_piece, write_json
from neurocodec import container
from neurocodec.codecs.base import shape_of
from neurocodec.errors import NeurocodecError

KINDS = ("flip", "overwrite", "truncate", "insert", "delete", "swap")
PAST_CRC_OUTCOMES = ("error", "same", "decoded", "crash", "bad-output", "slow")


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


def decode_outcome(codec, bad: bytes, judge, timeout: float) -> tuple[str, str | None]:
    """Decode ``bad``: ("error", None) for a NeurocodecError, ``judge(output)`` for a decode,
    ("crash", why) for any other exception, ("slow", why) past ``timeout`` seconds."""
    t0 = time.perf_counter()
    try:
        outcome, why = judge(codec.decode(bad))
    except NeurocodecError:
        outcome, why = "error", None
    except Exception as e:  # a crash: the finding this script exists for
        outcome, why = "crash", f"{type(e).__name__}: {e}"
    seconds = time.perf_counter() - t0
    if seconds > timeout:
        outcome, why = "slow", f"took {seconds:.1f} s"
    return outcome, why


def run(codec, data: bytes, reference: torch.Tensor, variants: int, seed: int, timeout: float) -> dict:
    rng = np.random.default_rng(seed)
    counts = {k: {"error": 0, "same": 0, "crash": 0, "wrong": 0, "slow": 0} for k in KINDS}
    problems = []

    def judge(out: torch.Tensor) -> tuple[str, str | None]:
        return ("same", None) if torch.equal(out, reference) else ("wrong", "decoded to a different output")

    for v in range(variants):
        kind = KINDS[v % len(KINDS)]
        bad = corrupt(data, kind, rng)
        outcome, why = ("same", None) if bad == data else decode_outcome(codec, bad, judge, timeout)
        if why:
            problems.append({"variant": v, "kind": kind, "error": why})
        counts[kind][outcome] += 1
    return {"counts": counts, "problems": problems[:50]}


def corrupt_payload(data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """Damage the CRC cannot see: one section's bytes, or the geometry, changed; then re-packed
    with a fresh CRC (a buggy writer, a hand-edited file). Returns the kind and the file."""
    header, sections = container.unpack(data)
    if rng.random() < 0.25:
        geometry = header.geometry
        if isinstance(geometry, container.AudioGeometry):
            field = "samples"
        elif isinstance(geometry, container.VideoGeometry):
            field = str(rng.choice(["height", "width", "frames"]))
        else:
            field = str(rng.choice(["height", "width"]))
        old = getattr(geometry, field)
        grow = rng.random() < 0.3  # far larger than the streams can describe, up to the container's limit
        new = (
            min(old * int(rng.integers(2, 1025)), largest(geometry, field))
            if grow
            else old + int(rng.integers(-64, 65))
        )
        geometry = dataclasses.replace(geometry, **{field: max(1, new)})
        kind = "geometry-grow" if grow else "geometry"
        return kind, container.pack(dataclasses.replace(header, geometry=geometry), sections)
    name = str(rng.choice(sorted(n for n, b in sections.items() if b)))
    kind = KINDS[int(rng.integers(len(KINDS)))]
    sections = {**sections, name: corrupt(sections[name], kind, rng)}
    return f"{name}-{kind}", container.pack(header, sections)


def largest(geometry: container.Geometry, field: str) -> int:
    """The largest value of ``field`` the container accepts with the rest of ``geometry`` kept."""
    if field == "samples":
        return container.MAX_SAMPLES // geometry.channels
    if field == "frames":  # a video of that many frames could not be decoded here: the limits say no
        return container.MAX_FRAMES
    other = geometry.width if field == "height" else geometry.height
    return min(container.MAX_SIDE, container.MAX_SAMPLES // (other * geometry.channels))


def run_past_crc(
    codec, data: bytes, reference: torch.Tensor, variants: int, seed: int, timeout: float
) -> dict:
    """Decode ``variants`` files from :func:`corrupt_payload`. Outcomes: "error" (a NeurocodecError),
    "same", "decoded" (a different reconstruction, allowed: nothing can tell it is damaged, but it
    must have the shape the file gives and finite samples; `Codec.decode` clamps the range),
    "crash", "bad-output" and "slow" (the last three are bugs)."""
    rng = np.random.default_rng(seed)
    counts: dict[str, dict[str, int]] = {}
    problems = []
    for v in range(variants):
        kind, bad = corrupt_payload(data, rng)
        shape = shape_of(container.peek_header(bad).geometry)

        def judge(out: torch.Tensor, shape: tuple[int, ...] = shape) -> tuple[str, str | None]:
            if tuple(out.shape) != shape or not bool(torch.isfinite(out).all()):
                return (
                    "bad-output",
                    f"output {tuple(out.shape)}, finite: {bool(torch.isfinite(out).all())}, file says {shape}",
                )
            return ("same", None) if torch.equal(out, reference) else ("decoded", None)

        outcome, why = decode_outcome(codec, bad, judge, timeout)
        if why:
            problems.append({"variant": v, "kind": kind, "error": why})
        row = counts.setdefault(kind, dict.fromkeys(PAST_CRC_OUTCOMES, 0))
        row[outcome] += 1
    return {"counts": dict(sorted(counts.items())), "problems": problems[:50]}


def totals_of(counts: dict[str, dict[str, int]]) -> dict[str, int]:
    outcomes = next(iter(counts.values())).keys()
    return {k: sum(c[k] for c in counts.values()) for k in outcomes}


def read_input(codec, args: argparse.Namespace) -> tuple[str, torch.Tensor, dict, int]:
    """(the input's name, the tensor, the keywords of ``encode``, the effort) of ``codec``: the
    whole input, or for a codec that fits at encode time (one with effort presets) a piece of it
    at ``--fit-effort``."""
    from neurocodec.io import read_codec_input

    path = {"image": args.image, "audio": args.audio, "video": args.video}[codec.media]
    x, kw = read_codec_input(path, codec.media, max_frames=args.frames)
    name = Path(path).name
    if not codec.presets:
        return name, x, kw, 0
    name, x = fitting_piece(name, x, kw, codec.media, args.fit_crop, 2, args.fit_audio_seconds)
    return name, x, kw, args.fit_effort


def main() -> int:
    import neurocodec as nc

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--codecs",
        default="all",
        help="codecs to test, comma-separated (each at its default quality), or all: every registered one",
    )
    ap.add_argument("--image", default=str(KODIM01))
    ap.add_argument(
        "--audio", default=str(DATA / "audio" / "music" / "music_solo_trumpet_06_sorohanro_full.wav")
    )
    ap.add_argument(
        "--video", default=str(DATA / "video" / "carphone_qcif_176x144_30000-1001fps_i420_120f.y4m")
    )
    ap.add_argument("--frames", type=int, default=8, help="the video's first N frames")
    ap.add_argument("--fit-effort", type=int, default=20, help="fitting codecs: iterations")
    ap.add_argument(
        "--fit-crop", type=int, default=64, help="fitting codecs: images and frames cropped to NxN"
    )
    ap.add_argument(
        "--fit-audio-seconds", type=float, default=0.25, help="fitting codecs: the clip cut to this"
    )
    ap.add_argument("--variants", type=int, default=10_000, help="variants with the CRC left as it is")
    ap.add_argument("--past-crc", type=int, default=1000, help="variants re-packed with a fresh CRC")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--out", default=str(EVAL / "corrupt_files.json"))
    args = ap.parse_args()

    from neurocodec.registry import list_codecs

    names = [c.name for c in list_codecs()] if args.codecs == "all" else args.codecs.split(",")
    runs, bugs = [], 0
    for name in names:
        codec = nc.load(name)
        source, x, kw, effort = read_input(codec, args)
        data = codec.encode(x, effort=effort, **kw)
        reference = codec.decode(data)
        weights = (
            "shipped weights" if codec.weights_hash != bytes(container.WEIGHTS_HASH_BYTES) else "no weights"
        )
        entry = {
            "codec": f"{codec.name} q{codec.quality}, {weights}",
            "input": source,
            "effort": effort,
            "file_bytes": len(data),
        }
        for phase, fn, n in (("crc", run, args.variants), ("past_crc", run_past_crc, args.past_crc)):
            t0 = time.perf_counter()
            result = fn(codec, data, reference, n, args.seed, args.timeout)
            totals = totals_of(result["counts"])
            bugs += sum(totals.get(k, 0) for k in ("crash", "wrong", "slow", "bad-output"))
            entry[phase] = {
                "variants": n,
                "seconds": round(time.perf_counter() - t0, 1),
                "totals": totals,
                **result,
            }
            print(name, phase, json.dumps(totals), f"({entry[phase]['seconds']} s)", flush=True)
        runs.append(entry)
    report = {"benchmark": "eval/corrupt_files.py", "command": command(), "runs": runs}
    write_json(args.out, report)
    print(f"{bugs} bugs")
    return 0 if bugs == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
