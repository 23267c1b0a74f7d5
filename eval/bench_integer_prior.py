"""What the integer prior path costs: the shipped hyperprior against its float twin, on Kodak.

The hyperprior's ``h_s`` is an integer network (``models/integer.py``): int weights, floored
activations, integer table indexes (one of the scale table's 64 scales) and means on a 1/16 grid.
Its float twin runs the same trained parameters as a plain float network: float weights,
unfloored activations, a continuous scale ``exp(log_s0 + index * step)`` and the unrounded
mean. Same ``g_a``, ``h_a``, ``z``, ``g_s``; the rate of each is its ideal rate (``-log2`` of the
likelihoods of ``y`` and ``z``), the distortion the PSNR of its own 8-bit reconstruction. The real
file sizes of the integer path are reported too (they add the coder's and container's overhead,
``eval/rate_overhead.py``).

This measures what the integer arithmetic costs *these weights*; the weights were trained with
that arithmetic (straight-through), so a float model trained on its own could differ further.
``--twins INTEGER_RUN FLOAT_RUN`` (repeatable, one pair per lambda) measures that: two training
runs of the same recipe, one with the integer ``h_s`` and one with ``--arch ...,float_prior=1``
(``h_s`` trained as its float twin,
:meth:`~neurocodec.models.hyperprior.HyperSynthesis.float_forward`), each on Kodak through its own
prior path (ideal rates), with the R-D loss ``lambda * 255^2 * MSE + bpp`` of each, and with two
pairs or more the BD-rate of the integer runs' curve against the float runs'.

    python eval/bench_integer_prior.py --data ../shared/data/kodak --out eval/bench_integer_prior.json
    python eval/bench_integer_prior.py --twins runs/twin-integer runs/twin-float \
        --twins runs/twin-integer-l0018 runs/twin-float-l0018 --out eval/archive/bench_float_twin.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import neurocodec as nc
from common import EVAL, KODAK, command, machine, write_json
from neurocodec.codecs.base import pad_to_multiple
from neurocodec.evaluation import bd_rate
from neurocodec.evaluation.metrics import psnr
from neurocodec.io import image_files
from neurocodec.io.image import read_image


def bits(likelihoods: torch.Tensor) -> float:
    return float(-torch.log2(likelihoods.double()).sum())


@torch.no_grad()
def ideal_points(m, x: torch.Tensor, priors: tuple[str, ...] = ("integer", "float")) -> dict:
    """``{prior: {"bpp", "psnr"}}`` of image ``x`` through model ``m`` with each prior path
    ("integer": the exact coded integers; "float": the float twin of the same parameters), the
    rate ideal (``-log2`` of the likelihoods)."""
    _, h, w = x.shape
    lc = m.latent_codec
    y = m.g_a(pad_to_multiple(x[None], m.downsampling))
    z_hat, z_likelihoods = lc.entropy_bottleneck(lc.h_a(y), mode="ste")
    z_bits = bits(z_likelihoods)
    row = {}
    for name in priors:
        if name == "integer":
            index, means = lc.coding_parameters(z_hat)  # the coded path: exact integers
            scales, mu = lc.scales_of(index.float()), means.float()
        else:
            index, mu = lc.h_s.float_forward(z_hat)
            scales = lc.scales_of(index)
        y_hat, y_likelihoods = lc.gaussian_conditional(y, scales, mu, "ste")
        x_hat = m.g_s(y_hat)[0, :, :h, :w].clamp(0, 1)
        row[name] = {"bpp": (bits(y_likelihoods) + z_bits) / (h * w), "psnr": psnr(x, x_hat)}
    return row


@torch.no_grad()
def measure(codec, path: Path) -> dict:
    x, _ = read_image(path)
    _, h, w = x.shape
    row = {"file": path.name, **ideal_points(codec.model, x)}
    data = codec.encode(x)
    row["integer_file"] = {"bpp": 8 * len(data) / (h * w), "psnr": psnr(x, codec.decode(data))}
    return row


def run_model(run: str):
    """The hyperprior a training run trained (its EMA weights if it kept them), tables built."""
    from neurocodec.models.hyperprior import MeanScaleHyperprior
    from neurocodec.train.checkpoint import load_checkpoint, model_weights

    tensors, meta = load_checkpoint(Path(run) / "checkpoint")
    model = MeanScaleHyperprior(**meta["config"]["arch"])
    model.load_state_dict(model_weights(tensors)[0])
    model.update_tables()
    return model.eval(), meta


def twins(integer_run: str, float_run: str, files: list[Path]) -> dict:
    """Each run through its own prior path on ``files``: mean bpp, PSNR and R-D loss."""
    out = {}
    for run, prior in ((integer_run, "integer"), (float_run, "float")):
        model, meta = run_model(run)
        config = meta["config"]
        if model.float_prior != (prior == "float"):
            raise SystemExit(f"{run}: expected a run with float_prior={prior == 'float'}")
        rows = [ideal_points(model, read_image(path)[0], (prior,))[prior] for path in files]
        bpp = sum(r["bpp"] for r in rows) / len(rows)
        db = sum(r["psnr"] for r in rows) / len(rows)
        loss = sum(config["lmbda"] * 255**2 * 10 ** (-r["psnr"] / 10) + r["bpp"] for r in rows) / len(rows)
        out[prior] = {
            "run": run, "arch": config["arch"], "lambda": config["lmbda"], "step": meta["step"],
            "bpp": round(bpp, 5), "psnr": round(db, 4), "rd_loss": round(loss, 5),
        }  # fmt: skip
        print(prior, out[prior], flush=True)
    out["rd_loss_float_vs_integer_pct"] = round(
        100 * (out["float"]["rd_loss"] / out["integer"]["rd_loss"] - 1), 3
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(KODAK))
    parser.add_argument("--qualities", default="1,2,3,4")
    parser.add_argument("--twins", nargs=2, action="append", metavar=("INTEGER_RUN", "FLOAT_RUN"))
    parser.add_argument("--out", default=str(EVAL / "bench_integer_prior.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    files = image_files(args.data)
    if args.twins:
        start = time.perf_counter()
        result = {
            "benchmark": "eval/bench_integer_prior.py --twins",
            "command": command(),
            "machine": machine(),
            "data": f"{Path(args.data).name} ({len(files)} images)",
            "metrics": "ideal rates (-log2 likelihoods of y and z), PSNR of the 8-bit-clamped float "
            "reconstruction, means over images; rd_loss = lambda * 255^2 * MSE + bpp per image, averaged",
            "pairs": [twins(*pair, files) for pair in args.twins],
        }
        curves = {p: [(r[p]["bpp"], r[p]["psnr"]) for r in result["pairs"]] for p in ("integer", "float")}
        if len(args.twins) >= 2:
            result["bd_rate_integer_vs_float_pct"] = round(bd_rate(curves["float"], curves["integer"]), 3)
        result["seconds"] = round(time.perf_counter() - start, 1)
        write_json(args.out, result)
        print({k: v for k, v in result.items() if k.startswith("bd_rate")})
        return
    curves: dict[str, list[tuple[float, float]]] = {"integer": [], "float": [], "integer_file": []}
    per_quality = []
    start = time.perf_counter()
    for quality in [int(q) for q in args.qualities.split(",")]:
        codec = nc.load("hyperprior", quality)
        rows = [measure(codec, path) for path in files]
        point = {"quality": quality}
        for name, curve in curves.items():
            bpp = sum(r[name]["bpp"] for r in rows) / len(rows)
            db = sum(r[name]["psnr"] for r in rows) / len(rows)
            curve.append((bpp, db))
            point[name] = {"bpp": round(bpp, 5), "psnr": round(db, 4)}
        per_quality.append(point)
        print(point, flush=True)
    result = {
        "benchmark": "eval/bench_integer_prior.py",
        "command": command(),
        "machine": machine(),
        "data": f"{Path(args.data).name} ({len(files)} images)",
        "points": per_quality,
        "bd_rate_pct": {
            "integer_vs_float_ideal": round(bd_rate(curves["float"], curves["integer"]), 3),
            "integer_file_vs_float_ideal": round(bd_rate(curves["float"], curves["integer_file"]), 3),
        },
        "seconds": round(time.perf_counter() - start, 1),
        "notes": "float = the same trained parameters without the integer rounding (weights, activations, "
        "table index, mean grid); a float model trained on its own: --twins (eval/archive/bench_float_twin.json).",
    }
    write_json(args.out, result)
    print(result["bd_rate_pct"])


if __name__ == "__main__":
    main()
