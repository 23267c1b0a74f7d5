#!/usr/bin/env python
"""GPU entropy-coder benchmark: neurocodec.entropy.gpu against the C++ core, same data, one run.

Needs a CUDA GPU. Workloads (seed 12345; scales log-uniform in [0.11, 64], symbols
``round(N(0, s))``, table indexes by the scale-indexed Gaussian tables of
``neurocodec.entropy.tables`` (64 tables), as workload G of ``eval/bench_entropy.py``):

- **G**: 1,000,000 symbols, one stream, at the default chunk size (2^18) and at 2^14.
- **batch**: 256 latents of 192x32x48 symbols (a Kodak image, 768x512, at 1/16 resolution
  with 192 channels), one stream each, coded with one ``encode_batch`` / ``decode_batch`` call.
- **kodak**: decode latency of one such latent (294,912 symbols) at chunk sizes 2^18, 2^14,
  2^12 and decode lookup resolutions (``lut_bits``) 16 and 8; target under 2 ms.

GPU times are end to end (the API call: header work on the host, transfers of compressed
bytes, kernels), ``torch.cuda.synchronize`` around each, best of ``--reps`` after a warm-up.
The C++ core runs on all CPU cores (``os.cpu_count()`` threads: over chunks for one stream,
over streams for the batch). Every GPU stream is checked to be byte-identical to the C++
one, and every decode to give back the symbols. Throughput: Msymbols/s, and GB/s of
compressed bytes.

Usage::

    python eval/bench_entropy_gpu.py          # writes eval/bench_entropy_gpu.json
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common import EVAL, best_of, command, machine, write_json

DEVICE = "cuda"
SEED = 12345
SCALE_MIN, SCALE_MAX = 0.11, 64.0


def log(msg: str) -> None:
    print(msg, flush=True)


def best_on_gpu(fn: Callable[[], Any], reps: int) -> tuple[float, Any]:
    """(best wall time in seconds, last result) over ``reps`` calls after one warm-up call, each
    timed until the GPU is done."""
    return best_of(fn, reps, torch.cuda.synchronize, warmup=1)


def symbols(
    n: int, boundaries: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, indexes) int32 on the GPU: G's distribution; indexes = tables.scale_index's rule."""
    dev = boundaries.device
    u = torch.rand(n, generator=generator, device=dev, dtype=torch.float64)
    scales = torch.exp(math.log(SCALE_MIN) + u * (math.log(SCALE_MAX) - math.log(SCALE_MIN)))
    y = torch.randn(n, generator=generator, device=dev, dtype=torch.float64) * scales
    # scale_index: the number of boundaries <= s (float64 comparisons, identical on any device)
    indexes = torch.searchsorted(boundaries, scales, right=True).to(torch.int32)
    return torch.round(y).to(torch.int32), indexes


def rate(n: int, nbytes: int, t: float) -> dict[str, float]:
    return {"ms": t * 1e3, "msym_per_s": n / t / 1e6, "gb_per_s": nbytes / t / 1e9}


def bench_stream(name, values, indexes, tables, gtables, chunk_bits, reps, threads, gpu, coder) -> dict:
    """One stream: GPU and C++ encode/decode, bytes compared."""
    n = values.numel()
    v_np, k_np = values.cpu().numpy(), indexes.cpu().numpy()
    t_ce, ref = best_on_gpu(
        lambda: coder.encode(v_np, k_np, tables, chunk_bits=chunk_bits, threads=threads), reps
    )
    t_cd, out = best_on_gpu(lambda: coder.decode(ref, k_np, tables, threads=threads), reps)
    assert np.array_equal(out, v_np)
    t_ge, data = best_on_gpu(lambda: gpu.encode(values, indexes, gtables, chunk_bits=chunk_bits), reps)
    assert data == ref, "GPU stream differs from the C++ stream"
    t_gd, out = best_on_gpu(lambda: gpu.decode(ref, indexes, gtables), reps)
    assert torch.equal(out, values)
    row = {
        "workload": name, "symbols": n, "chunk_bits": chunk_bits, "bytes": len(ref), "bits_per_symbol": 8 * len(ref) / n,
        "identical_bytes": True,
        "gpu_encode": rate(n, len(ref), t_ge), "gpu_decode": rate(n, len(ref), t_gd),
        "cpp_encode": rate(n, len(ref), t_ce), "cpp_decode": rate(n, len(ref), t_cd),
    }  # fmt: skip
    log(f"  {name} c={chunk_bits}: {len(ref)} B; " + summary(row))
    return row


def bench_batch(items, latent, tables, gtables, reps, threads, gpu, coder) -> dict:
    """256 streams: one encode_batch / decode_batch call vs the C++ core over streams in parallel."""
    n = sum(v.numel() for v, _ in items)
    host = [(v.cpu().numpy(), k.cpu().numpy()) for v, k in items]
    indexes = [k for _, k in items]
    with ThreadPoolExecutor(threads) as pool:
        t_ce, refs = best_on_gpu(
            lambda: list(pool.map(lambda vk: coder.encode(vk[0], vk[1], tables), host)), reps
        )
        t_cd, outs = best_on_gpu(
            lambda: list(pool.map(lambda d, vk: coder.decode(d, vk[1], tables), refs, host)), reps
        )
    assert all(np.array_equal(o, vk[0]) for o, vk in zip(outs, host, strict=True))
    nbytes = sum(len(d) for d in refs)
    t_ge, streams = best_on_gpu(lambda: gpu.encode_batch(items, gtables), reps)
    differ = sum(a != b for a, b in zip(streams, refs, strict=True))
    assert differ == 0, f"{differ} GPU streams differ from the C++ streams"
    t_gd, outs = best_on_gpu(lambda: gpu.decode_batch(refs, indexes, gtables), reps)
    assert all(torch.equal(o, v) for o, (v, _) in zip(outs, items, strict=True))
    row = {
        "workload": f"batch {len(items)} x {latent}", "streams": len(items), "symbols": n,
        "chunk_bits": 18, "bytes": nbytes, "bits_per_symbol": 8 * nbytes / n, "identical_bytes": True,
        "gpu_encode": rate(n, nbytes, t_ge), "gpu_decode": rate(n, nbytes, t_gd),
        "cpp_encode": rate(n, nbytes, t_ce), "cpp_decode": rate(n, nbytes, t_cd),
    }  # fmt: skip
    log(f"  batch: {nbytes} B; " + summary(row))
    return row


def bench_kodak(values, indexes, tables, reps, gpu, coder) -> list[dict]:
    """Decode latency of one Kodak-sized latent, by chunk size and lookup resolution."""
    rows = []
    v_np, k_np = values.cpu().numpy(), indexes.cpu().numpy()
    base_size = None
    for lut_bits in (16, 8):
        gtables = gpu.GpuTableSet(tables, DEVICE, lut_bits=lut_bits)
        for chunk_bits in (18, 14, 12):
            ref = coder.encode(v_np, k_np, tables, chunk_bits=chunk_bits)
            base_size = base_size or len(ref)
            assert gpu.encode(values, indexes, gtables, chunk_bits=chunk_bits) == ref
            t, out = best_on_gpu(lambda ref=ref, g=gtables: gpu.decode(ref, indexes, g), reps)
            assert torch.equal(out, values)
            rows.append({
                "chunk_bits": chunk_bits, "lut_bits": lut_bits, "bytes": len(ref),
                "size_vs_chunk_bits_18_pct": 100 * (len(ref) / base_size - 1), "decode_ms": t * 1e3,
            })  # fmt: skip
            log(f"  kodak c={chunk_bits} lut_bits={lut_bits}: {len(ref)} B, decode {t * 1e3:.3f} ms")
    return rows


def summary(row: dict) -> str:
    return ", ".join(
        f"{k} {row[k]['msym_per_s']:.0f} Msym/s ({row[k]['ms']:.2f} ms)"
        for k in ("gpu_encode", "gpu_decode", "cpp_encode", "cpp_decode")
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5, help="timed repetitions (best of), after a warm-up")
    ap.add_argument("--symbols", type=int, default=1_000_000, help="symbols of workload G")
    ap.add_argument("--batch", type=int, default=256, help="latents in the batched workload")
    ap.add_argument(
        "--latent", default="192x32x48", help="latent shape (CxHxW) of the batch and kodak workloads"
    )
    ap.add_argument("--out", type=Path, default=EVAL / "bench_entropy_gpu.json")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("bench_entropy_gpu.py needs a CUDA GPU (torch.cuda.is_available() is False)")

    from neurocodec.entropy import coder, gpu
    from neurocodec.entropy.tables import gaussian_scale_table, gaussian_tables, scale_boundaries

    threads = os.cpu_count() or 1
    device = torch.cuda.get_device_name()
    log(f"{device}; C++ core on {threads} threads")
    table_scales = gaussian_scale_table()
    cdfs, offsets = gaussian_tables(table_scales)
    tables = coder.TableSet(cdfs, offsets)
    gtables = gpu.GpuTableSet(tables, DEVICE)
    boundaries = torch.from_numpy(scale_boundaries(table_scales)).to(DEVICE)
    gen = torch.Generator(device=DEVICE).manual_seed(SEED)

    log(f"G: {args.symbols:,} symbols")
    values, indexes = symbols(args.symbols, boundaries, gen)
    rows = [
        bench_stream("G", values, indexes, tables, gtables, cb, args.reps, threads, gpu, coder)
        for cb in (18, 14)
    ]

    log(f"batch: {args.batch} latents of {args.latent}")
    per = math.prod(int(d) for d in args.latent.split("x"))
    values, indexes = symbols(args.batch * per, boundaries, gen)
    items = [(values[i * per : (i + 1) * per], indexes[i * per : (i + 1) * per]) for i in range(args.batch)]
    rows.append(bench_batch(items, args.latent, tables, gtables, max(1, args.reps // 2), threads, gpu, coder))

    log("kodak: decode latency of one latent")
    kodak = bench_kodak(*items[0], tables, 4 * args.reps, gpu, coder)

    result = {
        "command": command(),
        "machine": machine(DEVICE, packages=("triton",)),
        "device": device,
        "torch": torch.__version__,
        "triton": __import__("triton").__version__,
        "cpu_threads": threads,
        "tables": f"{len(cdfs)} Gaussian tables (neurocodec.entropy.tables), lut_bits {gtables.lut_bits}",
        "timing": f"end to end per API call, best of {args.reps} (batch: {max(1, args.reps // 2)}) after a warm-up",
        "streams": rows,
        "kodak_decode": {
            "latent": args.latent,
            "symbols": per,
            "target_ms": 2.0,
            "rows": kodak,
        },
    }
    write_json(args.out, result, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
