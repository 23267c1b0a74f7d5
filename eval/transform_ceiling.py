"""Where do the shipped image codecs lose their PSNR: in the transforms or in the quantization?

For each shipped quality of the ``hyperprior`` and ``mlic`` codecs, on Kodak:

- ``transforms``: the synthesis of the analysis's latent ``y`` as it is, unquantized (for
  mlic, through its latent residual prediction with the hyper means of the coded ``z``): the
  most these trained transforms can give at any rate;
- ``quantized``: the image of ``y`` quantized as coding quantizes it at effort 0 (the model's
  eval-mode forward pass; on all 24 images it should match ``coded``);
- ``coded``: the model card's point, from real files.

If ``transforms`` sits just above ``coded`` at the top quality, a longer or better entropy
model cannot lift the curve: wider transforms, or a much longer training of them, must.

    python eval/transform_ceiling.py --out eval/transform_ceiling.json
"""

from __future__ import annotations

import argparse

import torch

import neurocodec as nc
from common import EVAL, KODAK, command, machine, write_json
from neurocodec.codecs.base import pad_to_multiple
from neurocodec.evaluation.metrics import psnr
from neurocodec.io import image_files
from neurocodec.io.image import read_image


@torch.no_grad()
def reconstructions(codec, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{"transforms", "quantized"}``: the image of the unquantized latent, and of the latent
    as coding quantizes it (the model's eval-mode forward pass)."""
    m = codec.model.eval()
    h, w = x.shape[-2:]
    padded = pad_to_multiple(x[None], m.downsampling)
    y = m.g_a(padded)
    z_hat = torch.round(m.latent_codec.h_a(y))
    if codec.name == "mlic":
        _, means = m.latent_codec.hyper(z_hat)
        unquantized = m.g_s(
            m.latent_codec.residual_prediction(y, means)
        )  # through the LRP, with the coded z's means
    else:
        unquantized = m.g_s(y)
    out = {"transforms": unquantized, "quantized": m(padded)["x_hat"]}
    return {k: v[0, :, :h, :w].clamp(0, 1) for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(KODAK))
    parser.add_argument("--codecs", default="hyperprior,mlic")
    parser.add_argument("--limit", type=int, help="only the first N images")
    parser.add_argument("--out", default=str(EVAL / "transform_ceiling.json"))
    args = parser.parse_args(argv)

    images = [read_image(f)[0] for f in image_files(args.data)[: args.limit]]
    rows = []
    for name in args.codecs.split(","):
        info = next(i for i in nc.list_codecs() if i.name == name)
        for config in info.weights:
            quality = config.quality
            codec = nc.load(name, quality)
            values: dict[str, list[float]] = {}
            for x in images:
                for kind, x_hat in reconstructions(codec, x).items():
                    values.setdefault(kind, []).append(psnr(x, x_hat))
            row = {
                "codec": name,
                "quality": quality,
                "lambda": config.mse_lambda,
                **{kind: round(sum(v) / len(v), 3) for kind, v in values.items()},
                "coded": config.rd_points[0],
            }
            rows.append(row)
            print(
                f"{name} q{quality}: transforms {row['transforms']:.2f} dB, quantized {row['quantized']:.2f} dB, "
                f"coded {row['coded']['psnr']:.2f} dB at {row['coded']['bpp']:.4f} bpp"
            )

    result = {
        "what": "PSNR on Kodak of each shipped quality's synthesis of its unquantized latent "
        "(transforms), of its latent quantized as coded (quantized), and of its real files (coded, the model card)",
        "command": command(),
        "images": len(images),
        "machine": machine(),
        "rows": rows,
    }
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
