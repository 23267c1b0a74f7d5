"""Codec speed on one Kodak image: our `hyperprior` vs CompressAI's `mbt2018-mean`, same run.

Both models have the same architecture and channel counts (N=128, M=192), the same thread
count, `torch.inference_mode()` and the same input image. Encode and decode are timed end to
end (file bytes in and out for ours, CompressAI's `compress`/`decompress` strings for theirs),
and each step is timed directly:

- the transforms: g_a (analysis) and g_s (synthesis);
- the entropy part, everything else, as an encode + decode pair performs it: h_a once, the
  hyper-synthesis h_s twice (encoder and decoder) with the derivation of the table indexes
  and means (ours: the exact integer h_s outputs them; CompressAI: `build_indexes` on its
  float scales), and the z and y streams coded and decoded once.

For ours, ``h_s_gemms`` times the int8 matrix products of one h_s pass alone (random int8
operands of the shapes the int8 path multiplies for this image, one input digit per layer):
the floor under h_s that the integer path's other work (im2col, sums, shifts) sits on.
``h_s_gemms_float32`` runs the same products in float32, CompressAI's arithmetic: their ratio is
what int8 buys on this CPU.
``ratios[...]["entropy part ceiling"]`` divides CompressAI's entropy part by ours at that floor,
h_a + 2 x the GEMMs, as if coding both streams and all of h_s but its GEMMs took no time: the
most any implementation of this exact integer h_s can reach on this CPU while h_a keeps the
float arithmetic both codecs share.

Our encoder runs g_a on contiguous tensors with its original arithmetic (files must stay
byte-identical across versions); our decoder runs g_s channels-last with faster but
differently rounded routes (`models/layers.py`).

CompressAI is timed twice, as it ships (contiguous NCHW tensors) and converted to channels-last
(model and input), the memory layout our codec uses internally; each ratio compares us with
the faster of the two for that part (the JSON names which), and both rows are in the JSON.

The steps of all models are interleaved inside each repetition and medians are reported, so a
background load (this machine also trains models) weighs on every model alike; the load
average is recorded before and after. Each step records wall-clock and CPU time (this
process's user + system time): on a shared machine the CPU time leaves out the time other
processes hold the cores and is the steadier measure; the ratios are given for both.

Neither model has trained weights here (no CompressAI download; ours are not trained at this
size yet), so both run with initial weights and freshly built tables: the speeds are
representative, the file sizes are not.

    python eval/bench_codec.py [--image PATH] [--reps 5] [--threads 1 [2 ...]] [--out eval/bench_codec.json]
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from common import EVAL, KODIM01, command, interleaved, load_average, machine, write_json

CHANNELS_LAST = torch.channels_last


def h_s_gemm_operands(h_s, z_shape: tuple[int, ...]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(columns, weights)`` of every int8 GEMM one pass of the integer ``h_s`` runs for a
    hyper-latent of ``z_shape`` (random columns; each layer's input taken as one int8 digit)."""
    n, _, h, w = z_shape
    g = torch.Generator().manual_seed(0)
    operands = []
    for layer in (h_s.up1, h_s.up2, h_s.out):
        if not layer.transposed:  # odd kernel, padding k // 2
            h, w = -(-h // layer.stride), -(-w // layer.stride)
        for phase in layer._plan().phases:
            cols = torch.randint(
                -128, 128, (n * h * w, phase.weights.shape[0]), generator=g, dtype=torch.int8
            )
            operands.append((cols, phase.weights))
        if layer.transposed:
            h, w = h * layer.stride, w * layer.stride
    return operands


def our_steps(x: torch.Tensor) -> tuple[dict[str, Callable[[], object]], dict]:
    from neurocodec.codecs.hyperprior import HyperpriorCodec
    from neurocodec.models.integer import int8_matmul

    codec = HyperpriorCodec(N=128, M=192, quality=1).eval()
    codec.model.update_tables()
    m = codec.model
    xb = x.unsqueeze(0).contiguous(memory_format=CHANNELS_LAST)  # as HyperpriorCodec.encode passes it to g_a
    data = codec.encode(x)
    lc = m.latent_codec
    y = m.g_a(xb)
    z = lc.h_a(y)
    z_hat = torch.round(z)
    index, means = lc.coding_parameters(z_hat)
    gc = lc.gaussian_conditional
    ys = gc.compress(y, index, means)
    y_hat = gc.decompress(ys, index, means).to(torch.float32).contiguous(memory_format=CHANNELS_LAST)
    gemms = h_s_gemm_operands(lc.h_s, z_hat.shape)
    float_gemms = [(a.float(), b.float()) for a, b in gemms]  # the same products in float32
    steps = {
        "encode": lambda: codec.encode(x),
        "decode": lambda: codec.decode(data),
        "g_a": lambda: m.g_a(xb),
        "g_s": lambda: m.g_s(y_hat),
        "h_a": lambda: lc.h_a(y),
        "h_s_and_indexes": lambda: lc.coding_parameters(z_hat),  # exact int8 path: int32 indexes + means
        "h_s_gemms": lambda: [int8_matmul(a, b) for a, b in gemms],
        "h_s_gemms_float32": lambda: [a @ b for a, b in float_gemms],
        "z_coding": lambda: lc.entropy_bottleneck.decompress(lc.entropy_bottleneck.compress(z), z.shape),
        "y_coding": lambda: gc.decompress(gc.compress(y, index, means), index, means),
    }
    info = {
        "bytes": len(data),
        "h_s_weight_digits": [layer._plan().digits for layer in (lc.h_s.up1, lc.h_s.up2, lc.h_s.out)],
        "h_s_gemm_multiply_adds": sum(a.shape[0] * a.shape[1] * b.shape[1] for a, b in gemms),
    }
    return steps, info


def their_steps(x: torch.Tensor, channels_last: bool) -> tuple[dict[str, Callable[[], object]], dict]:
    from compressai.models import MeanScaleHyperprior

    model = MeanScaleHyperprior(N=128, M=192).eval()
    model.update(force=True)
    xb = x.unsqueeze(0)
    if channels_last:
        model = copy.deepcopy(model).to(memory_format=CHANNELS_LAST)
        xb = xb.contiguous(memory_format=CHANNELS_LAST)
    out = model.compress(xb)
    y = model.g_a(xb)
    z = model.h_a(y)
    eb, gc = model.entropy_bottleneck, model.gaussian_conditional
    z_hat = eb.decompress(eb.compress(z), z.shape[-2:])
    scales_hat, means_hat = model.h_s(z_hat).chunk(2, 1)
    indexes = gc.build_indexes(scales_hat)

    def h_s_and_indexes():
        scales, means = model.h_s(z_hat).chunk(2, 1)
        return gc.build_indexes(scales), means

    steps = {
        "encode": lambda: model.compress(xb),
        "decode": lambda: model.decompress(out["strings"], out["shape"]),
        "g_a": lambda: model.g_a(xb),
        "g_s": lambda: model.g_s(y),
        "h_a": lambda: model.h_a(y),
        "h_s_and_indexes": h_s_and_indexes,
        "z_coding": lambda: eb.decompress(eb.compress(z), z.shape[-2:]),
        "y_coding": lambda: gc.decompress(gc.compress(y, indexes, means=means_hat), indexes, means=means_hat),
    }
    return steps, {"bytes": sum(len(s[0]) for s in out["strings"])}


def summarize(t: dict[str, dict[str, float]], key: str = "median_s") -> dict[str, float]:
    """End to end, transforms, the entropy part (h_a + 2 x (h_s + indexes) + z and y coding), the rest."""
    s = {name: v[key] for name, v in t.items()}
    end_to_end = s["encode"] + s["decode"]
    transforms = s["g_a"] + s["g_s"]
    entropy = s["h_a"] + 2 * s["h_s_and_indexes"] + s["z_coding"] + s["y_coding"]
    return {
        "end_to_end_s": end_to_end,
        "transforms_s": transforms,
        "entropy_part_s": entropy,
        "other_s": end_to_end - transforms - entropy,  # padding, checks, container, conversions
    }


def run(x: torch.Tensor, threads: int, reps: int) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    load_before = load_average()
    with torch.inference_mode():
        models = {
            "neurocodec hyperprior": our_steps(x),
            "compressai mbt2018-mean": their_steps(x, channels_last=False),
            "compressai mbt2018-mean, channels-last": their_steps(x, channels_last=True),
        }
        steps = {f"{model}|{name}": fn for model, (fns, _) in models.items() for name, fn in fns.items()}
        # one warm-up round: oneDNN primitives, caches, integer weight digits
        timed = {name: t.summary() for name, t in interleaved(steps, reps, warmup=1).items()}
    rows = {}
    for model, (fns, info) in models.items():
        t = {name: timed[f"{model}|{name}"] for name in fns}
        rows[model] = {"steps": t, **summarize(t), "min": summarize(t, "min_s"), "cpu": summarize(t, "cpu_median_s"),
                       **info}  # fmt: skip
    ours = rows["neurocodec hyperprior"]
    theirs = [name for name in rows if name.startswith("compressai")]
    ratios = {}
    for clock, view, step_key in (("cpu time", "cpu", "cpu_median_s"), ("wall clock", None, "median_s")):
        metrics = {
            "entropy part (target >= 8)": lambda row, v=view: (row[v] if v else row)["entropy_part_s"],
            "end to end (target >= 1.3)": lambda row, v=view: (row[v] if v else row)["end_to_end_s"],
            "transforms": lambda row, v=view: (row[v] if v else row)["transforms_s"],
        }
        for step in ("h_a", "h_s_and_indexes", "z_coding", "y_coding"):
            metrics[step] = lambda row, s=step, k=step_key: row["steps"][s][k]
        ratios[clock] = {}
        for metric, get in metrics.items():
            best = min(theirs, key=lambda n, g=get: g(rows[n]))  # CompressAI's faster layout for this part
            ratios[clock][metric] = {
                "compressai / ours": get(rows[best]) / get(ours),
                "compressai layout": best,
            }
        best = ratios[clock]["entropy part (target >= 8)"]["compressai layout"]
        floor = ours["steps"]["h_a"][step_key] + 2 * ours["steps"]["h_s_gemms"][step_key]
        ratios[clock]["entropy part ceiling"] = {
            "compressai / ours": metrics["entropy part (target >= 8)"](rows[best]) / floor,
            "compressai layout": best,
            "ours": "h_a + 2 x h_s_gemms: no coding time, no h_s work besides its int8 GEMMs",
        }
    return {"threads": threads, "load_average_before": load_before, "load_average_after": load_average(),
            "rows": rows, "ratios": ratios}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", default=str(KODIM01))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="+", default=[1])
    ap.add_argument("--out", default=str(EVAL / "bench_codec.json"))
    args = ap.parse_args()

    from neurocodec.io.image import read_image

    x, _ = read_image(args.image)
    h, w = x.shape[-2:]
    if h % 64 or w % 64:
        print("CompressAI needs sides that are multiples of 64", file=sys.stderr)
        return 2
    results = [run(x, threads, args.reps) for threads in args.threads]
    record = {
        "benchmark": "eval/bench_codec.py",
        "command": command(),
        "image": Path(args.image).name,
        "size": [h, w],
        "reps": args.reps,
        "statistic": "medians of interleaved repetitions, CPU time (rows[...]['cpu']) and wall clock "
        "(rows[...]; minima in rows[...]['min'] and per step)",
        "weights": "initial (untrained) weights for both; speeds only",
        "machine": machine(),
        "results": results,
    }
    for r in results:
        load = f"{r['load_average_before'][0]:.2f} -> {r['load_average_after'][0]:.2f}"
        print(f"threads {r['threads']}, load average {load}; medians, CPU time (wall clock)")
        for name, row in r["rows"].items():
            parts = ("end_to_end_s", "transforms_s", "entropy_part_s", "other_s")
            print(f"  {name:40s} " + "  ".join(
                f"{p[:-2].replace('_', ' ')} {row['cpu'][p] * 1e3:6.0f} ({row[p] * 1e3:6.0f}) ms" for p in parts
            ))  # fmt: skip
        ours = r["rows"]["neurocodec hyperprior"]
        gemm_s = ours["steps"]["h_s_gemms"]["cpu_median_s"]
        print(f"  ours: h_s {ours['steps']['h_s_and_indexes']['cpu_median_s'] * 1e3:.1f} ms, of which its int8 GEMMs "
              f"{gemm_s * 1e3:.1f} ms ({ours['h_s_gemm_multiply_adds'] / gemm_s / 1e9:.0f} G multiply-adds/s; "
              f"{ours['steps']['h_s_gemms_float32']['cpu_median_s'] * 1e3:.1f} ms in float32)")  # fmt: skip
        for clock, ratios in r["ratios"].items():
            print(f"  compressai (its faster layout) / ours, {clock}: " + ", ".join(
                f"{k} {v['compressai / ours']:.2f}x" for k, v in ratios.items()
            ))  # fmt: skip
    write_json(args.out, record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
