"""S2LIC (`s2lic`) speed on one Kodak image: the small preset's decode against `mlic` tiny's at
equal width (N=64, M=96, 4 slices of 24), in the same process; the reference (paper-size) preset's
encode and decode; and what each ACGC variant costs (``anchor_context`` on and off).

Issue 30's CPU target: s2lic small decodes in at most 1.5x mlic tiny's time. Times are end to end
(complete files in and out), best of ``--reps``, the codecs taking turns in every repetition so
that load from other processes hits each alike; decode is also split into the prior path (z
decoding, integer h_s, the schedule's steps with the integer context networks, entropy decoding)
and the synthesis (LRP and g_s). With ``--s2lic-card`` / ``--mlic-card`` (model cards of exported
runs, ``neurocodec export --out-dir``) the small models use trained weights; the reference preset
and anything without a card run with initial weights and freshly built tables: speeds are
representative, file sizes are not.

    OMP_NUM_THREADS=1 python eval/s2lic_speed.py [--image PATH] [--reps 3] [--threads 1]
        [--s2lic-card CARD.json] [--s2lic-reuse-card CARD.json] [--mlic-card CARD.json] [--out eval/s2lic_speed.json]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from common import EVAL, KODIM01, command, interleaved, load_average, machine, write_json


def load_card(card: str):
    """The codec of an exported model card (``neurocodec export --out-dir``; its weight file beside
    it), as :func:`neurocodec.load` builds a shipped one."""
    from safetensors.torch import load_file

    from neurocodec.registry import WeightConfig, family

    config = WeightConfig.from_json(Path(card))
    codec = family(config.codec).codec.from_weights(config, load_file(config.path), torch.device("cpu"))
    codec.quality, codec.weights_hash, codec.lmbda = config.quality, config.weights_hash, config.mse_lambda
    return codec.eval()


def initial_codec(name: str, **arch):
    """A codec with initial weights and freshly built tables."""
    from neurocodec.registry import family

    torch.manual_seed(0)
    codec = family(name).codec(quality=1, **arch).eval()
    codec.model.update_tables()
    return codec


def codec_jobs(codec, x: torch.Tensor) -> tuple[dict, dict]:
    """(facts, timed jobs): encode, decode, and decode's two parts, of a ``g_a`` / context latent
    codec / ``g_s`` image codec (``mlic`` or ``s2lic``)."""
    from neurocodec import container
    from neurocodec.codecs.base import blocks

    m = codec.model
    lc = m.latent_codec
    data = codec.encode(x)
    _, sections = container.unpack(data)
    zh, zw = blocks(x.shape[-2:], m.downsampling)
    per_block = m.downsampling // m.latent_stride

    def prior_path():
        with torch.inference_mode():
            z_hat = lc.entropy_bottleneck.decompress(sections["z"], (1, m.N, zh, zw))
            hyper, means = lc.coding_hyper(z_hat)
            y_hat = lc.schedule.decompress_streams(
                [sections["y"]], lc.context_model, hyper, lc.gaussian_conditional,
                (per_block * zh, per_block * zw),
            )  # fmt: skip
            return y_hat, means

    y_hat, means = prior_path()
    layout = torch.channels_last

    def synthesis():
        with torch.inference_mode():
            refined = lc.residual_prediction(
                y_hat.to(torch.float32, memory_format=layout), means.to(torch.float32, memory_format=layout)
            )
            return m.g_s(refined.contiguous(memory_format=layout))

    facts = {
        "codec": codec.name,
        "params": sum(p.numel() for p in m.parameters()),
        "config": m.config.to_dict(),
        "bytes": len(data),
        "bpp": 8 * len(data) / (x.shape[-1] * x.shape[-2]),
    }
    jobs = {
        "encode_s": lambda: codec.encode(x),
        "decode_s": lambda: codec.decode(data),
        "decode_prior_path_s": prior_path,
        "decode_synthesis_s": synthesis,
    }
    return facts, jobs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", default=str(KODIM01))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--s2lic-card", help="model card of a trained s2lic small (anchor_context=1)")
    ap.add_argument("--s2lic-reuse-card", help="model card of a trained s2lic small with anchor_context=0")
    ap.add_argument("--mlic-card", help="model card of a trained mlic tiny")
    ap.add_argument("--no-reference", action="store_true", help="leave the paper-size preset out")
    ap.add_argument("--out", default=str(EVAL / "s2lic_speed.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from neurocodec.io.image import read_image

    x, _ = read_image(args.image)
    codecs = {
        "mlic tiny": load_card(args.mlic_card) if args.mlic_card else initial_codec("mlic", preset="tiny"),
        "s2lic small": load_card(args.s2lic_card)
        if args.s2lic_card
        else initial_codec("s2lic", preset="small"),
        "s2lic small, anchor_context=0": (
            load_card(args.s2lic_reuse_card)
            if args.s2lic_reuse_card
            else initial_codec("s2lic", preset="small", anchor_context=0)
        ),
    }
    if not args.no_reference:
        codecs["s2lic reference"] = initial_codec("s2lic", preset="reference")
    weights = {
        "mlic tiny": args.mlic_card or "initial",
        "s2lic small": args.s2lic_card or "initial",
        "s2lic small, anchor_context=0": args.s2lic_reuse_card or "initial",
        "s2lic reference": "initial",
    }
    load_before = load_average()
    models = {name: codec_jobs(codec, x) for name, codec in codecs.items()}
    jobs = {(name, key): fn for name, (_, js) in models.items() for key, fn in js.items()}
    timings = interleaved(jobs, args.reps, warmup=1)
    rows = {name: {**facts, "weights": weights[name]} for name, (facts, _) in models.items()}
    for (name, key), timing in timings.items():
        rows[name][key] = timing.best
        rows[name][key.replace("_s", "_median_s")] = timing.median
    base = rows["mlic tiny"]["decode_s"]
    ratios = {
        "decode, s2lic small / mlic tiny (target <= 1.5)": rows["s2lic small"]["decode_s"] / base,
        "decode, s2lic small anchor_context=0 / mlic tiny": rows["s2lic small, anchor_context=0"]["decode_s"]
        / base,
        "decode synthesis, s2lic small / mlic tiny": rows["s2lic small"]["decode_synthesis_s"]
        / rows["mlic tiny"]["decode_synthesis_s"],
        "decode prior path, s2lic small / mlic tiny": rows["s2lic small"]["decode_prior_path_s"]
        / rows["mlic tiny"]["decode_prior_path_s"],
    }
    h, w = x.shape[-2:]
    result = {
        "benchmark": "eval/s2lic_speed.py",
        "command": command(),
        "image": Path(args.image).name,
        "size": [h, w],
        "threads": args.threads,
        "device": "cpu",
        "reps": args.reps,
        "machine": machine(),
        "load_average": {"before": load_before, "after": load_average()},
        "rows": rows,
        "ratios": ratios,
    }
    for name, r in rows.items():
        print(
            f"{name:30s} {r['params'] / 1e6:6.2f} M  encode {r['encode_s']:6.2f} s  decode {r['decode_s']:6.2f} s"
            f"  (prior path {r['decode_prior_path_s']:.2f} s, synthesis {r['decode_synthesis_s']:.2f} s)"
        )
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}x")
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
