"""One c3 fit on a 256x256 top-left crop of a Kodak image with the codec's real file: bytes, PSNR
and what the encoder measured, for a schedule or architecture override. Probes of a change go
here before a full evaluation (``eval/c3_kodak.py``); each run appends a row to
``eval/c3_probe.jsonl``.

``--cc`` is Cool-chic's lambda (loss MSE + lambda * bpp; ours is ``1 / (cc * 255^2)``), so a probe
at 0.004 with 2,000 iterations compares with Cool-chic 5.0.1 measured on this machine kind
(``../shared/research/inr.md`` §7: 0.338 bpp at 28.14 dB on kodim01's crop).

    OMP_NUM_THREADS=1 python eval/c3_probe.py --tag T [--img kodim01] [--it 2000] [--cc 0.004] \\
        [--sched '{"clip": 0}'] [--arch '{"arm_hidden": 16}'] [--quality 3] [--crop centre] [--trace 250] \\
        [--predict]

``--quality`` uses the codec's lambda instead of ``--cc``; ``--bpp`` fits to a rate (the lambda it
settled on is in the row); ``--crop centre`` takes the centre
256x256 crop, ``--crop full`` the whole image; ``--trace N`` records, every N steps, the training loss and the loss with hard
rounding at the tables' resolution (what the file would cost then), into the row's ``trace``.
``--predict`` writes no file: the row has the fitted, quantized model's predicted bytes (latents at
the float ARM's coded rate, the networks' section as packed) and its float PSNR before clamping, for
architectures the native coder does not have yet (such a probe patches the model; e.g.
``eval/archive/c3_probes_session22.patch``).

    python eval/c3_probe.py --compare BASE_TAG TAG [TAG ...]

prints the rows of each TAG against the BASE_TAG row of the same image and point: R-D cost
(``bpp + lambda 255^2 MSE``, the loss c3 fits), rate and dB changes.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch

from common import EVAL, KODAK, git_commit, override_c3_schedule, read_rows
from neurocodec.codecs import c3, c3_fit
from neurocodec.io.image import read_image


def tracer(x: torch.Tensor, lmbda: float, every: int, out: list[dict]):
    """A ``c3_fit.fit`` trace callback appending, every ``every`` steps, the step's training loss and
    the loss with hard rounding at the tables' resolution."""
    count = [0]

    def trace(phase: str, model, loss: float, bpp: float, mse: float) -> None:
        count[0] += 1
        if count[0] % every:
            return
        hard, hard_bpp, hard_mse = c3_fit.coded_loss(model, x, lmbda)
        out.append(
            {
                "step": count[0],
                "phase": phase,
                "loss": round(loss, 5),
                "bpp": round(bpp, 5),
                "hard_loss": round(hard, 5),
                "hard_bpp": round(hard_bpp, 5),
                "hard_psnr": round(-10 * math.log10(max(hard_mse, 1e-10)), 3),
                "latent_rms": round(
                    float(torch.cat([y.reshape(-1) for y in model.latents]).pow(2).mean().sqrt()), 3
                ),
            }
        )
        print(json.dumps(out[-1]), flush=True)

    return trace


def predict(args, codec: c3.C3Codec, x: torch.Tensor, trace: list[dict]) -> None:
    """The codec's encoding up to its file, for a probe row of predicted bytes: the latents' coded
    rate under the float ARM at the tables' resolution (files came within 1 % of it) and the
    networks' section as packed. (The rows tagged ``armv*-pred`` and ``ifce*-pred`` estimated the
    networks from their tables' bits instead: ``predicted_network_bytes``.)"""
    t0 = time.process_time()
    x = x[None]
    model, fitted = codec.fit_model(x, args.it)
    steps, bpp, mse = fitted["steps"], fitted["bpp"], fitted["mse"]
    network_bytes = len(c3.pack_networks(model, steps))
    pixels = x.shape[-2] * x.shape[-1]
    row = {
        "tag": args.tag, "img": args.img, "crop": 0 if args.crop == "full" else 256, "it": args.it,
        "cc": None if args.quality else args.cc, "quality": args.quality or None, "lambda": fitted["lambda"],
        "crop_at": args.crop, "arch": args.arch, "sched": args.sched, "seed": args.seed, "threads": 1, "predicted": True,
        "predicted_latent_bytes": bpp * pixels / 8, "network_bytes": network_bytes,
        "bpp": bpp + 8 * network_bytes / pixels, "psnr": -10 * math.log10(mse),
        "enc_cpu_s": time.process_time() - t0, "code": git_commit()[:7], "trace": trace,
    }  # fmt: skip
    print(json.dumps(row))
    with (EVAL / "c3_probe.jsonl").open("a") as f:
        f.write(json.dumps(row) + "\n")


def rd_cost(row: dict, lmbda: float | None = None) -> float:
    """``bpp + lambda * 255^2 * MSE`` of a row (its own lambda unless given): the loss c3 fits."""
    lmbda = row["lambda"] if lmbda is None else lmbda
    return row["bpp"] + lmbda * 255**2 * 10 ** (-row["psnr"] / 10)


def compare(base: str, tags: list[str]) -> None:
    """Each row tagged in ``tags`` against the latest ``base`` row of the same image, quality and
    iterations in ``eval/c3_probe.jsonl``: R-D cost change, rate change, dB. A ``base`` ending in
    ``.jsonl`` is instead a rows file of ``eval/c3_kodak.py``, whose c3 rows of whole images are
    the bases (a probe at ``--quality Q --it N --crop full`` against a preset's run)."""
    rows = [json.loads(line) for line in (EVAL / "c3_probe.jsonl").open()]
    point = lambda r: (r["img"], r.get("quality"), r.get("cc"), r["it"], r.get("crop_at"))  # noqa: E731
    if base.endswith(".jsonl"):
        bases = {
            (r["file"], r["setting"], None, r["effort"], "full"): r
            for r in read_rows(base)
            if r["codec"] == "c3" and not r["crop"]
        }
    else:
        bases = {point(r): r for r in rows if r["tag"] == base}
    for r in rows:
        b = bases.get(point(r))
        if r["tag"] in tags and b is not None:
            print(
                f"{r['tag']} {r['img']}: {r['bpp']:.4f} bpp {r['psnr']:.3f} dB; against {base}: "
                f"R-D cost {100 * (rd_cost(r) / rd_cost(b, r['lambda']) - 1):+.1f} %, bpp {100 * (r['bpp'] / b['bpp'] - 1):+.1f} %, "
                f"{r['psnr'] - b['psnr']:+.3f} dB"
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tag")
    p.add_argument(
        "--compare", nargs="+", metavar="TAG",
        help="no fit: print the rows of the 2nd, 3rd... tags against the first tag's, per image",
    )  # fmt: skip
    p.add_argument("--img", default="kodim01")
    p.add_argument("--it", type=int, default=2000)
    p.add_argument("--cc", type=float, default=0.004, help="Cool-chic's lambda")
    p.add_argument("--arch", default="{}", help="c3 architecture overrides (JSON)")
    p.add_argument("--sched", default="{}", help="c3_fit.Schedule overrides (JSON)")
    p.add_argument("--quality", type=int, default=0, help="the codec's quality (overrides --cc)")
    p.add_argument("--crop", choices=("topleft", "centre", "full"), default="topleft")
    p.add_argument("--trace", type=int, default=0, help="record the losses every N steps")
    p.add_argument("--bpp", type=float, default=None, help="fit to this rate (the codec's target_bpp)")
    p.add_argument("--seed", type=int, default=0, help="the fit's seed (the codec's seed; 0 as it encodes)")
    p.add_argument(
        "--predict", action="store_true",
        help="no file: the fitted, quantized model's predicted bytes (float ARM; for architectures the coder lacks)",
    )  # fmt: skip
    args = p.parse_args()
    if args.compare:
        return compare(args.compare[0], args.compare[1:])
    if not args.tag:
        p.error("--tag is needed for a fit")
    torch.set_num_threads(1)
    x = read_image(KODAK / f"{args.img}.png")[0]
    if args.crop != "full":
        top, left = ((x.shape[1] - 256) // 2, (x.shape[2] - 256) // 2) if args.crop == "centre" else (0, 0)
        x = x[:, top : top + 256, left : left + 256].contiguous()
    override_c3_schedule(json.loads(args.sched))
    codec = c3.C3Codec(quality=args.quality or 1, **json.loads(args.arch))
    if not args.quality:
        codec.lmbda = 1 / (args.cc * 255**2)
    codec.target_bpp = args.bpp
    codec.seed = args.seed
    trace: list[dict] = []
    if args.trace:
        codec.trace = tracer(x[None], codec.lmbda, args.trace, trace)
    if args.predict:
        return predict(args, codec, x, trace)
    t0, w0 = time.process_time(), time.perf_counter()
    data = codec.encode(x, effort=args.it)
    enc_cpu, enc_wall = time.process_time() - t0, time.perf_counter() - w0
    w0 = time.perf_counter()
    y = codec.decode(data)
    decode_s = time.perf_counter() - w0
    mse = float(torch.mean(((y.clamp(0, 1) * 255).round() / 255 - x) ** 2))
    fit = codec.last_fit
    row = {
        "tag": args.tag,
        "img": args.img,
        "crop": 0 if args.crop == "full" else 256,
        "it": args.it,
        "cc": None if args.quality else args.cc,
        "quality": args.quality or None,
        "target_bpp": args.bpp,
        "lambda": fit["lambda"],
        "crop_at": args.crop,
        "arch": args.arch,
        "sched": args.sched,
        "seed": args.seed,
        "threads": 1,
        "bytes": len(data),
        "bpp": len(data) * 8 / x[0].numel(),
        "psnr": -10 * math.log10(mse),
        "network_bytes": fit["network_bytes"],
        "latent_bytes": fit["latent_bytes"],
        "predicted_latent_bytes": fit["predicted_latent_bits"] / 8,
        "enc_cpu_s": enc_cpu,
        "enc_wall_s": enc_wall,
        "decode_s": decode_s,
        "code": git_commit()[:7],
        "trace": trace,
    }
    print(json.dumps(row))
    with (EVAL / "c3_probe.jsonl").open("a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
