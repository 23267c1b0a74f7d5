"""Encoder speed on one Kodak image: `walloc-image` vs the `hyperprior` codec, same process.

Issue 7's target: the WaLLoC encoder (wavelet packet transform + 1x1 projection + rounding +
entropy coding, and with a hyperprior its h_a and integer h_s) at least 10x faster than the hyperprior codec's encoder. Both are timed end
to end through ``codec.encode`` (the bytes of a complete file, container included), best of
``--reps``, the two encoders alternating so that both see the same machine load; WaLLoC's
parts are timed directly. Decoding is timed too, for the record.

Weights: with ``--shipped Q``, WaLLoC is the package's ``walloc-image`` quality Q. Without it,
WaLLoC runs with initial weights, its factorized prior first fitted to this image's latent for a
few hundred steps (the prior only; a minute of CPU at most) so that its tables cover the latent
as trained tables would, instead of escaping most symbols: the speed of the coder depends on
that, the speed of the transforms does not. The hyperprior is always the mbt2018-mean size
(N=128, M=192) with initial weights and tables built by ``update_tables``, as in
eval/bench_codec.py (its encoder's speed does not depend on training; the shipped CPU preview
is half as wide, which would flatter WaLLoC less).

    python eval/bench_walloc.py [--image PATH] [--reps 5] [--threads 1] [--device cpu|cuda]
                                [--shipped Q] [--out eval/bench_walloc.json]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from common import EVAL, KODIM01, best_of, command, interleaved, machine, write_json


def fit_prior(model, y: torch.Tensor, steps: int) -> None:
    """Fit WaLLoC's factorized prior (density and quantiles) to the fixed latent ``y``."""
    prior = model.latent_codec.entropy_bottleneck
    density = [p for n, p in prior.named_parameters() if not n.endswith("quantiles")]
    opt = torch.optim.Adam(density, lr=3e-2)
    aux_opt = torch.optim.Adam([prior.quantiles], lr=1.0)  # untrained latents span about +-100
    prior.train()
    for _ in range(steps):
        _, lik = prior(y)
        loss = -torch.log2(lik).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        aux = prior.aux_loss()
        aux_opt.zero_grad()
        aux.backward()
        aux_opt.step()
    prior.eval()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", default=str(KODIM01))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--prior-steps", type=int, default=300)
    ap.add_argument("--shipped", type=int, help="use the shipped walloc-image weights of this quality")
    ap.add_argument("--out", default=str(EVAL / "bench_walloc.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else None

    from neurocodec.codecs.hyperprior import HyperpriorCodec
    from neurocodec.codecs.walloc import WaLLoCImageCodec
    from neurocodec.io.image import read_image

    x, _ = read_image(args.image)
    h, w = x.shape[-2:]
    megapixels = h * w / 1e6

    if args.shipped is not None:
        import neurocodec as nc

        walloc = nc.load("walloc-image", args.shipped, device)
        m = walloc.model
        weights = f"walloc-image: shipped q{args.shipped}; hyperprior: initial weights (N=128, M=192)"
    else:
        walloc = WaLLoCImageCodec(quality=1).eval()  # default arch: J=3, 12 latent channels
        m = walloc.model
        with torch.no_grad():
            y = m.encode_latent(m.analysis(walloc._padded(x.unsqueeze(0))))
        fit_prior(m, y, args.prior_steps)
        m.update_tables()
        walloc = walloc.to(device)
        weights = (
            f"initial (untrained) weights; WaLLoC's prior fitted {args.prior_steps} steps to this latent"
        )
    hyper = HyperpriorCodec(N=128, M=192, quality=1).eval()
    hyper.model.update_tables()
    hyper = hyper.to(device)
    xd = x.to(device)

    rows = {}
    with torch.inference_mode():
        xb = walloc._padded(xd.unsqueeze(0))
        t_wpt, X = best_of(lambda: m.analysis(xb), args.reps, sync)
        t_proj, y = best_of(lambda: m.encode_latent(X), args.reps, sync)
        t_code, _ = best_of(
            lambda: m.latent_codec.compress(y), args.reps, sync
        )  # with a hyperprior: h_a, h_s too
        # the two encoders alternate, so that both see the same machine load
        encodes = interleaved(
            {"walloc": lambda: walloc.encode(xd), "hyper": lambda: hyper.encode(xd)}, args.reps, sync
        )
        (t_enc, data), (t_hyper_enc, hyper_data) = (
            (encodes[k].best, encodes[k].out) for k in ("walloc", "hyper")
        )
        t_dec, _ = best_of(lambda: walloc.decode(data), max(1, args.reps // 2), sync)
        rows["walloc-image"] = {
            "arch": {"levels": m.levels, "latent_dim": m.latent_dim, "packets": m.packets,
                     "hyperprior": m.hyper_channels},
            "encode_s": t_enc, "decode_s": t_dec,
            "wpt_s": t_wpt, "projection_s": t_proj, "entropy_coding_s": t_code,
            "bytes": len(data), "latent_symbols": y.numel(),
        }  # fmt: skip
        t_dec, _ = best_of(lambda: hyper.decode(hyper_data), max(1, args.reps // 2), sync)
        rows["hyperprior"] = {
            "arch": {"N": 128, "M": 192}, "encode_s": t_hyper_enc, "decode_s": t_dec, "bytes": len(hyper_data),
        }  # fmt: skip
    for r in rows.values():
        r["encode_mpix_per_s"] = megapixels / r["encode_s"]
        r["decode_mpix_per_s"] = megapixels / r["decode_s"]
    ratio = rows["hyperprior"]["encode_s"] / rows["walloc-image"]["encode_s"]
    result = {
        "benchmark": "eval/bench_walloc.py",
        "command": command(),
        "image": Path(args.image).name,
        "size": [h, w],
        "device": str(device),
        "threads": args.threads,
        "reps": args.reps,
        "weights": weights,
        "machine": machine(str(device)),
        "rows": rows,
        "encode_speedup_walloc_over_hyperprior": ratio,
        "target": "encode speedup >= 10 (issue 7)",
    }
    for name, r in rows.items():
        print(
            f"{name:13s} encode {r['encode_s'] * 1e3:8.1f} ms ({r['encode_mpix_per_s']:7.2f} MP/s)  "
            f"decode {r['decode_s'] * 1e3:8.1f} ms ({r['decode_mpix_per_s']:6.2f} MP/s)"
        )
    wr = rows["walloc-image"]
    print(
        f"walloc parts: WPT {wr['wpt_s'] * 1e3:.1f} ms, projection {wr['projection_s'] * 1e3:.1f} ms, "
        f"entropy coding {wr['entropy_coding_s'] * 1e3:.1f} ms ({wr['latent_symbols']} symbols"
        + (", with the hyperprior's h_a and h_s)" if walloc.model.hyper_channels else ")")
    )
    print(f"encode speedup, walloc-image over hyperprior: {ratio:.1f}x (target >= 10)")
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
