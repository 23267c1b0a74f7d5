"""How much can a WaLLoC latent of K channels hold? The linear ceiling, from PCA.

WaLLoC's encoder is one 1x1 projection of the wavelet packets: per latent position, a linear map
of ``3 * 4**J`` packet coefficients to ``K`` numbers. Whatever the decoder does, it sees only
those ``K`` numbers. The best any *linear* decoder can do with them (no quantization, no rate) is
the projection onto the top ``K`` principal components of the packet coefficients. This script
fits that projection on Kodak itself (the most favourable case) and reports the PSNR of
the reconstructions for several ``K``: where a ``K``-channel codec's curve must flatten out,
give or take what the nonlinear decoder recovers.

    python eval/walloc_linear_ceiling.py --out eval/walloc_linear_ceiling.json
"""

from __future__ import annotations

import argparse

import torch

from common import EVAL, KODAK, command, machine, write_json
from neurocodec.evaluation.metrics import psnr
from neurocodec.io import image_files
from neurocodec.io.image import read_image
from neurocodec.models.walloc import WaLLoCImage


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(KODAK))
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--wavelet", default="bior4.4")
    parser.add_argument("--channels", default="6,12,16,24,36,48")
    parser.add_argument("--out", default=str(EVAL / "walloc_linear_ceiling.json"))
    args = parser.parse_args(argv)

    model = WaLLoCImage(levels=args.levels, latent_dim=1, wavelet=args.wavelet)  # its packet transform only
    images = [read_image(f)[0] for f in image_files(args.data)]
    packets = [model.analysis(x[None]) for x in images]
    rows = torch.cat([p.permute(0, 2, 3, 1).reshape(-1, p.shape[1]) for p in packets]).double()
    _, vectors = torch.linalg.eigh(rows.T @ rows / len(rows))
    vectors = vectors.flip(1)  # largest eigenvalue first

    ceiling = []
    for k in (int(c) for c in args.channels.split(",")):
        basis = vectors[:, :k]
        values = []
        for x, p in zip(images, packets, strict=True):
            kept = (p.permute(0, 2, 3, 1).double() @ basis @ basis.T).permute(0, 3, 1, 2).float()
            x_hat = model.synthesis(kept)[0]
            values.append(psnr(x, x_hat))
        ceiling.append({"latent_channels": k, "psnr": round(sum(values) / len(values), 3)})
        print(f"K={k:3d}: {ceiling[-1]['psnr']:.2f} dB")

    result = {
        "what": "PSNR on Kodak of the best linear K-dimensional projection of WaLLoC's wavelet "
        "packets (PCA fitted on Kodak, no quantization): the ceiling of a K-channel linear "
        "encoder with a linear decoder",
        "command": command(),
        "data": {"dir": args.data, "files": len(images)},
        "levels": args.levels,
        "wavelet": args.wavelet,
        "packet_channels": rows.shape[1],
        "ceiling": ceiling,
        "machine": machine(),
    }
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
