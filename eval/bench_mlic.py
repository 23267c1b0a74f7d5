"""MLICv2 (`mlic`) speed on one Kodak image, small and paper presets, against CompressAI's
`cheng2020-anchor` (quality 3, N=128) in the same run.

Issue 8's CPU target: the small model's decode at least 3x faster than `cheng2020-anchor`'s
(CompressAI's serial autoregressive context model). Times are end to end — complete files in
and out for ours, CompressAI's `compress`/`decompress` strings for theirs — best of `--reps`;
ours are also split into the transforms and the prior path (z decoding, integer h_s, the
schedule's steps with the integer context networks, entropy decoding).

No model has trained weights here (nothing is downloaded; ours are not trained yet), so all run
with initial weights and freshly built tables: speeds are representative, file sizes are not.
The machine may be shared: the load average is recorded with the results.

With ``--device cuda`` our codec runs on the GPU (issue 8's GPU target: decode of a Kodak image,
entropy decoding included, under 50 ms on one H100), each job timed up to a
``torch.cuda.synchronize()``; CompressAI's model runs there too when it is installed, and is left
out when it is not (the device image lacks it).

    python eval/bench_mlic.py [--image PATH] [--reps 3] [--threads 1] [--device cpu] [--out eval/bench_mlic.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from common import EVAL, KODIM01, command, interleaved, load_average, machine, write_json


def our_jobs(preset: str, x: torch.Tensor, device: str = "cpu") -> tuple[dict, dict]:
    """(facts, timed jobs) of our codec with ``preset``: encode, decode, and decode's two parts."""
    from neurocodec import container
    from neurocodec.codecs.base import blocks
    from neurocodec.codecs.mlic import MLICCodec

    torch.manual_seed(0)
    codec = MLICCodec(preset, quality=1).eval()
    codec.model.update_tables()
    codec = codec.to(device)
    m = codec.model
    data = codec.encode(x)
    _, sections = container.unpack(data)
    zh, zw = blocks(x.shape[-2:], codec.model.downsampling)

    def prior_path():
        with torch.inference_mode():
            lc = m.latent_codec
            z_hat = lc.entropy_bottleneck.decompress(sections["z"], (1, m.N, zh, zw)).to(codec.device)
            hyper, means = lc.coding_hyper(z_hat)
            y_hat = lc.schedule.decompress_streams(
                [sections["y"]],
                lc.context_model,
                hyper,
                lc.gaussian_conditional,
                (4 * zh, 4 * zw),
                codec.device,
            )
            return y_hat, means

    y_hat, means = prior_path()

    def synthesis():
        with torch.inference_mode():
            lrp = m.latent_codec.residual_prediction
            return m.g_s(lrp(y_hat.to(torch.float32), means.to(torch.float32)))

    facts = {
        "params": sum(p.numel() for p in m.parameters()),
        "config": m.config.to_dict(),
        "steps": len(m.latent_codec.schedule.steps),
        "bytes": len(data),
    }
    jobs = {
        "encode_s": lambda: codec.encode(x),
        "decode_s": lambda: codec.decode(data),
        "decode_prior_path_s": prior_path,
        "decode_synthesis_s": synthesis,
    }
    return facts, jobs


def cheng_jobs(x: torch.Tensor, device: str = "cpu") -> tuple[dict, dict]:
    from compressai.zoo import cheng2020_anchor

    torch.manual_seed(0)
    net = cheng2020_anchor(quality=3, pretrained=False).eval().to(device)
    net.update(force=True)
    xb = x.unsqueeze(0).to(device)
    with torch.inference_mode():
        out = net.compress(xb)

    def encode():
        with torch.inference_mode():
            return net.compress(xb)

    def decode():
        with torch.inference_mode():
            return net.decompress(out["strings"], out["shape"])

    facts = {
        "params": sum(p.numel() for p in net.parameters()),
        "bytes": sum(len(s[0]) for s in out["strings"]),
    }
    return facts, {"encode_s": encode, "decode_s": decode}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", default=str(KODIM01))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--presets", default="small,paper")
    ap.add_argument("--device", default="cpu", help="cpu, or cuda for the GPU decode target")
    ap.add_argument("--out", default=str(EVAL / "bench_mlic.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from neurocodec.io.image import read_image

    x, _ = read_image(args.image)
    h, w = x.shape[-2:]
    if h % 64 or w % 64:
        print("CompressAI needs sides that are multiples of 64", file=sys.stderr)
        return 2
    load_before = load_average()
    models = {}
    try:
        models["compressai cheng2020-anchor q3"] = cheng_jobs(x, args.device)
    except ImportError:
        if args.device == "cpu":
            raise  # the CPU target is a ratio against it
        print("CompressAI is not installed: our codec alone", file=sys.stderr)
    for preset in args.presets.split(","):
        models[f"neurocodec mlic {preset}"] = our_jobs(preset, x, args.device)
    jobs = {(name, key): fn for name, (_, js) in models.items() for key, fn in js.items()}
    # the best time of each job, the jobs taking turns in every round; on a GPU each is timed until
    # its kernels are done, after one untimed warm-up round
    gpu = args.device.startswith("cuda")
    timings = interleaved(jobs, args.reps, torch.cuda.synchronize if gpu else None, warmup=int(gpu))
    best = {job: t.best for job, t in timings.items()}
    rows = {name: dict(facts) for name, (facts, _) in models.items()}
    for (name, key), seconds in best.items():
        rows[name][key] = seconds
    cheng = rows.get("compressai cheng2020-anchor q3", {}).get("decode_s")
    ratios = {
        f"decode, cheng2020-anchor / mlic {p} (target for small >= 3)": cheng
        / rows[f"neurocodec mlic {p}"]["decode_s"]
        for p in args.presets.split(",")
        if cheng is not None
    }
    result = {
        "benchmark": "eval/bench_mlic.py",
        "command": command(),
        "image": Path(args.image).name,
        "size": [h, w],
        "threads": args.threads,
        "device": torch.cuda.get_device_name(args.device) if args.device != "cpu" else "cpu",
        "reps": args.reps,
        "weights": "initial (untrained) weights for all; speeds only",
        "machine": machine(args.device),
        "load_average": {"before": load_before, "after": load_average()},
        "rows": rows,
        "ratios": ratios,
    }
    for name, r in rows.items():
        extra = ""
        if "decode_prior_path_s" in r:
            extra = (
                f"  (prior path {r['decode_prior_path_s']:.2f} s, synthesis {r['decode_synthesis_s']:.2f} s)"
            )
        print(
            f"{name:32s} {r['params'] / 1e6:6.2f} M  encode {r['encode_s']:6.2f} s  decode {r['decode_s']:6.2f} s{extra}"
        )
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}x")
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
