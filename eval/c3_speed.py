"""How fast c3 fits and decodes on this CPU: seconds per fitting iteration on kodim01 (its
256x256 top-left crop, where Cool-chic 5.0.1 was measured on this machine kind, and all of it)
with 1 and 2 threads, and the decoding time of a full Kodak image on one thread, for each of
the two architectures (``c3.ARCH`` below quality ``c3.RICH_QUALITY``, with ``c3.RICH_ARCH`` from it).

Fitting runs the real loop (``c3_fit.fit``, one candidate) for ``--iterations`` iterations after
a short untimed one; decoding is the best of 3 runs of ``C3Codec.decode`` on a file fitted at
low effort (the decoder's work does not depend on how well the model fitted). The reference:
Cool-chic 5.0.1 took 0.14-0.17 CPU-s an iteration at 484 MAC/pixel and 0.19-0.27 at 1,945 on
the crop (``../shared/research/inr.md`` §7); ``macs_per_pixel`` is ours.

    OMP_NUM_THREADS=2 python eval/c3_speed.py [--iterations 30] [--out eval/c3_speed.json]
"""

from __future__ import annotations

import argparse
import time

import torch

from common import KODIM01, command, machine, write_json
from neurocodec.codecs import c3, c3_fit
from neurocodec.codecs.base import pad_to_multiple
from neurocodec.io.image import read_image
from neurocodec.models.c3 import ImageModel

COOL_CHIC_CPU_S_PER_ITERATION = {"lop (484 MAC/pixel)": [0.14, 0.17], "hop (1,945 MAC/pixel)": [0.19, 0.27]}


ARCHS = {"base": c3.ARCH, "rich": {**c3.ARCH, **c3.RICH_ARCH}}  # the quality each is used at: QUALITIES
QUALITIES = {"base": 1, "rich": c3.RICH_QUALITY}


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU), so that wall times are complete."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fitting_speed(x: torch.Tensor, iterations: int, threads: int, arch: dict) -> dict:
    """Seconds per iteration of ``c3_fit.fit`` on ``x`` (on its device) with ``threads`` torch threads."""
    torch.set_num_threads(threads)
    padded = tuple(pad_to_multiple(x, c3.PADDING).shape[-2:])
    lmbda = c3.LAMBDAS[3]

    def run(n: int) -> tuple[float, float]:
        synchronize(x.device)
        w0, c0 = time.perf_counter(), time.process_time()
        c3_fit.fit(x, padded, lmbda, c3_fit.Schedule(n, candidates=1), arch)
        synchronize(x.device)
        return time.perf_counter() - w0, time.process_time() - c0

    run(5)  # allocator and kernels warm
    wall, cpu = run(iterations)
    return {
        "threads": threads,
        "size": list(x.shape[-2:]),
        "iterations": iterations,
        "wall_s_per_iteration": wall / iterations,
        "cpu_s_per_iteration": cpu / iterations,
    }


def decoding_speed(x: torch.Tensor, quality: int) -> dict:
    torch.set_num_threads(1)
    codec = c3.C3Codec(quality=quality)
    data = codec.encode(x, effort=100)
    codec.decode(data)  # tables built, kernels warm
    times = []
    for _ in range(3):
        w0, c0 = time.perf_counter(), time.process_time()
        codec.decode(data)
        times.append((time.perf_counter() - w0, time.process_time() - c0))
    wall, cpu = min(times)
    return {
        "quality": quality,
        "size": list(x.shape[-2:]),
        "bytes": len(data),
        "wall_s": wall,
        "cpu_s": cpu,
        "threads": 1,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--out", default="eval/c3_speed.json")
    args = p.parse_args()
    full = read_image(KODIM01)[0][None]
    images = {"256x256 crop": full[..., :256, :256].contiguous(), "full 768x512": full}
    fitting, decoding = [], []
    for arch_name, arch in ARCHS.items():
        for name, x in images.items():
            for threads in (1, 2):
                fitting.append(
                    {"arch": arch_name, "image": name, **fitting_speed(x, args.iterations, threads, arch)}
                )
                print(fitting[-1], flush=True)
        decoding.append({"arch": arch_name, **decoding_speed(full[0], QUALITIES[arch_name])})
        print(decoding[-1], flush=True)
    write_json(
        args.out,
        {
            "command": command(),
            "machine": machine(),
            "archs": ARCHS,
            "macs_per_pixel": {
                name: ImageModel(512, 768, **arch).macs_per_pixel() for name, arch in ARCHS.items()
            },
            "fitting": fitting,
            "decoding": decoding,
            "cool_chic_5_0_1_cpu_s_per_iteration_256_crop": COOL_CHIC_CPU_S_PER_ITERATION,
        },
    )


if __name__ == "__main__":
    main()
