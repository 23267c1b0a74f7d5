"""How much a c3 context model (ARM) of another shape saves on the same latents: the latents of a
fitted c3 file are held fixed and only an ARM of each variant shape is fitted to them (bits of
the latents, full batch, Adam on a cosine), then quantized with the power-of-two steps that
minimize the latents' bits plus the ARM's own, as the encoder does. The difference between two
variants is what the context buys for those latents with the noise of a whole fit taken out:
the latents were fitted with the file's own ARM, so a joint fit with a larger one can only adapt
them further.

A file that does not exist yet is first fitted (``--fit IMAGE:QUALITY:EFFORT``, Kodak) and written.
Rows go to ``--rows`` as they finish; a variant already there is skipped.

    OMP_NUM_THREADS=1 python eval/c3_arm_probe.py --fit kodim03:3:1000 \\
        --variants '[{"arm_hidden": 16, "arm_kernel": 5}, {"arm_hidden": 16, "arm_kernel": 7}]'
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from common import KODAK, ROOT, append_row, read_rows
from neurocodec import container
from neurocodec.codecs import c3, c3_fit
from neurocodec.io.image import read_image
from neurocodec.models.c3 import WEIGHT_MAX, ContextModel, ImageModel, grid_sizes

ARM_GROUPS = ("arm.weight", "arm.bias")


def fitted_file(image: str, quality: int, effort: int, folder: Path) -> Path:
    """A c3 file of Kodak ``image`` at ``quality`` and ``effort`` in ``folder``, fitted if not
    there, without the encoder's refit of the ARM (``c3_fit.refit_arm``): what it is measured on."""
    path = folder / f"{image}-q{quality}-e{effort}.ncd"
    if not path.exists():
        codec = c3.C3Codec(quality=quality)
        codec.arm_refit = 0
        data = codec.encode(read_image(KODAK / f"{image}.png")[0], effort=effort)
        folder.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return path


def quantized_arm_bits(model: ImageModel, grids: list[torch.Tensor]) -> tuple[float, float, dict]:
    """Quantize ``model``'s ARM in place, each group with the step that minimizes the latents'
    coded bits plus its own; (latents' bits, ARM parameters' bits, steps)."""
    steps, parameter_bits = {}, 0.0
    for name, tensors in c3_fit.groups(model):
        if name not in ARM_GROUPS:
            continue
        originals = [t.detach().clone() for t in tensors]
        best = None
        for k in c3_fit.STEP_CANDIDATES:
            if name == "arm.weight" and max(float(o.abs().max()) for o in originals) * 2.0**k > WEIGHT_MAX:
                continue
            bits = c3_fit.quantize_group(model, tensors, originals, k)
            with torch.no_grad():
                total = float(c3_fit.latent_bits(model, grids, coded=True)) + bits
            if best is None or total < best[0]:
                best = (total, k, bits)
        c3_fit.quantize_group(model, tensors, originals, best[1])
        steps[name], parameter_bits = best[1], parameter_bits + best[2]
    with torch.no_grad():
        latent = float(c3_fit.latent_bits(model, grids, coded=True))
    return latent, parameter_bits, steps


def file_row(path: Path) -> tuple[dict, ImageModel, list[torch.Tensor], int]:
    """The file's own figures, its model and its integer latents, and its pixel count."""
    data = path.read_bytes()
    header, sections = container.unpack(data)
    g = header.geometry
    height, width = (-(-n // c3.PADDING) * c3.PADDING for n in (g.height, g.width))
    model, steps = c3.unpack_networks(sections["networks"])
    arm = c3.integer_arm(model, steps)
    grids = [
        y[None, None].float() for y in c3.decode_latents(sections["latents"], grid_sizes(height, width), arm)
    ]
    parameter_bits = sum(
        c3_fit.parameter_cost(
            torch.cat([c3_fit.coded_values(model, t) * 2.0 ** steps[name] for t in tensors])
        )[1]
        for name, tensors in c3_fit.groups(model)
        if name in ARM_GROUPS
    )
    with torch.no_grad():
        latent = float(c3_fit.latent_bits(model, grids, coded=True))
    row = {
        "variant": "file",
        "arch": arm_shape(model, {}),
        "file_bytes": len(data),
        "latent_stream_bytes": len(sections["latents"]),
        "latent_bytes": latent / 8,
        "arm_parameter_bytes": parameter_bits / 8,
    }  # fmt: skip
    return row, model, grids, g.height * g.width


def arm_shape(model: ImageModel, arch: dict) -> dict:
    """``model``'s ARM shape with ``arch``'s changes."""
    own = {"arm_hidden": model.arm.hidden_size, "arm_kernel": model.arm.kernel}
    return {**own, "arm_coarse_kernel": model.arm.coarse_kernel, **arch}


def warm_start(arm: ContextModel, trained: ContextModel) -> None:
    """Start ``arm`` from the ``trained`` one of the same width: its windows' weights at their
    places in ``arm``'s (larger or equal) windows, the others zero; the later layers copied."""
    with torch.no_grad():
        for mine, theirs in ((arm.same, trained.same * trained.mask), (arm.coarse, trained.coarse)):
            r = (mine.shape[-1] - theirs.shape[-1]) // 2
            mine.zero_()
            mine[:, r : r + theirs.shape[-2], r : r + theirs.shape[-1]] = theirs
        arm.same.mul_(arm.mask)
        arm.bias.copy_(trained.bias)
        arm.hidden.load_state_dict(trained.hidden.state_dict())
        arm.head.load_state_dict(trained.head.state_dict())


def probe(
    model: ImageModel,
    grids: list[torch.Tensor],
    pixels: int,
    arch: dict,
    iterations: int,
    lr: float,
    warm: bool,
) -> dict:
    """Fit an ARM of ``arch`` (over ``model``'s) to the fixed ``grids``, from scratch or (``warm``)
    from the file's; its figures, quantized."""
    torch.manual_seed(0)
    shape = arm_shape(model, arch)
    height, width = grids[0].shape[-2:]
    variant = ImageModel(height, width, **shape, synthesis_width=model.synthesis.mix.out_channels)
    if warm:
        warm_start(variant.arm, model.arm)
    opt = torch.optim.Adam(variant.arm.parameters(), lr=lr)
    c0 = time.process_time()
    for i in range(iterations):
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * i / iterations))
        loss = c3_fit.latent_bits(variant, grids) / pixels
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    latent, parameter_bits, steps = quantized_arm_bits(variant, grids)
    return {
        "arch": shape,
        "latent_bytes": latent / 8,
        "arm_parameter_bytes": parameter_bits / 8,
        "arm_parameters": sum(
            c3_fit.coded_values(variant, t).numel() for name, ts in c3_fit.groups(variant) if name in ARM_GROUPS
            for t in ts
        ),
        "steps": steps,
        "macs_per_pixel": variant.macs_per_pixel(),
        "iterations": iterations,
        "lr": lr,
        "warm": warm,
        "cpu_s": time.process_time() - c0,
    }  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fit", required=True, help="IMAGE:QUALITY:EFFORT, e.g. kodim03:3:1000")
    p.add_argument(
        "--folder", type=Path, default=ROOT / "eval" / "results" / "c3-arm-probe", help="where the files are"
    )
    p.add_argument("--variants", required=True, help="JSON list of ARM shapes (keys of c3.ARCH)")
    p.add_argument("--iterations", type=int, default=1500)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--warm", action="store_true", help="start each variant from the file's ARM (same width)")
    p.add_argument("--rows", type=Path, default=ROOT / "eval" / "c3_arm_probe.jsonl")
    args = p.parse_args()
    torch.set_num_threads(1)
    image, quality, effort = args.fit.split(":")
    path = fitted_file(image, int(quality), int(effort), args.folder)
    base, model, grids, pixels = file_row(path)

    def key(
        file: str, variant: str, arch: dict, iterations: int | None = None, lr: float | None = None
    ) -> tuple:
        return file, variant, json.dumps(arch, sort_keys=True), iterations, lr

    done = {
        key(r["file"], r["variant"], r["arch"], r.get("iterations"), r.get("lr"))
        for r in read_rows(args.rows)
    }
    common = {"file": path.name, "image": image, "quality": int(quality), "effort": int(effort)}
    rows = [] if key(path.name, "file", base["arch"]) in done else [{**common, **base}]
    for row in rows:
        append_row(args.rows, row)
        print(json.dumps(row), flush=True)
    variant = "warm" if args.warm else "refit"
    for arch in json.loads(args.variants):
        if key(path.name, variant, arm_shape(model, arch), args.iterations, args.lr) in done:
            continue
        row = {
            **common,
            "variant": variant,
            **probe(model, grids, pixels, arch, args.iterations, args.lr, args.warm),
        }
        append_row(args.rows, row)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
