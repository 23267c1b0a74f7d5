"""Extreme compression on Kodak: the ``vqgan`` codec against Pillow AVIF and WebP at their lowest settings.

For each vqgan weight file (quality = codebook size) and each Kodak image: bpp, PSNR and MS-SSIM
of the real file; the bits of the indices under the learned prior against uniform coding
(``log2(K)`` bits an index, the paper's coding); and the loss resilience: the same image
written as ``--packets`` packets, ``--lost`` of them dropped (chosen per image by a seeded
generator), decoded with the lost indices restored -- its MS-SSIM drop. Pillow AVIF and WebP
at their lowest qualities are measured on the same images in the same run, and side-by-side
crops (original | vqgan at each quality | AVIF at quality 0) go to ``--crops`` for a person to
look at. Resumable: rows are appended to ``--rows`` as they are measured.

    OMP_NUM_THREADS=1 python eval/vqgan_kodak.py [--weights DIR] [--files kodim01,...]
    python eval/vqgan_kodak.py --summary
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
import warnings
from pathlib import Path

import torch

from common import KODAK, append_row, baseline_row, machine, read_rows, write_json
from neurocodec import container
from neurocodec import evaluation as rd
from neurocodec.evaluation.metrics import ms_ssim, psnr
from neurocodec.io.image import read_image, write_image

HERE = Path(__file__).resolve().parent
LOWEST = {"avif": (0, 5, 10), "webp": (0, 5)}
CROP = 256


def measure_vqgan(codec, x: torch.Tensor, name: str, packets: int, lost: int) -> dict:
    from neurocodec.codecs.vqgan import drop_packets

    t0 = time.perf_counter()
    data = codec.encode(x)
    t1 = time.perf_counter()
    x_hat = codec.decode(data)
    t2 = time.perf_counter()
    row = rd.rd_row(name, x, data, x_hat, t1 - t0, t2 - t1)
    size = codec.model.latent_codec.codebook.size
    _, sections = container.unpack(data)
    index_bits = 8 * sum(len(s) for s in sections.values())
    height, width = math.ceil(x.shape[1] / 16), math.ceil(x.shape[2] / 16)
    blocks = height * width
    indices, _ = codec.model.latent_codec.decode_indices(sections, (1, height, width))
    row.update(
        indices_used=sorted(set(indices.flatten().tolist())),
        codebook=size,
        index_bits=index_bits,
        uniform_bits=blocks * math.log2(size),
        prior_saving_percent=100 * (1 - index_bits / (blocks * math.log2(size))),
    )
    codec.packets = packets
    try:
        resilient = codec.encode(x)
    finally:
        codec.packets = 0
    dropped = sorted(random.Random(f"{name}-{size}").sample(range(packets), lost))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        restored = codec.decode(drop_packets(resilient, dropped))
    row.update(
        packets=packets,
        packets_lost=dropped,
        packet_bytes=len(resilient),
        ms_ssim_lost=ms_ssim(x, restored),
        psnr_lost=psnr(x, restored),
    )
    return row, x_hat, restored


def centre(x: torch.Tensor) -> torch.Tensor:
    _, h, w = x.shape
    return x[:, (h - CROP) // 2 : (h + CROP) // 2, (w - CROP) // 2 : (w + CROP) // 2]


def summarize(rows: list[dict]) -> dict:
    files = sorted({r["file"] for r in rows if r["codec"] == "vqgan"})
    out: dict = {"files": files, "codecs": {}}
    for codec in sorted({r["codec"] for r in rows}):
        for setting in sorted({r["setting"] for r in rows if r["codec"] == codec}):
            group = [
                r for r in rows if r["codec"] == codec and r["setting"] == setting and r["file"] in files
            ]
            if sorted(r["file"] for r in group) != files:
                continue
            point = {k: sum(r[k] for r in group) / len(group) for k in ("bpp", "psnr", "ms_ssim")}
            if codec == "vqgan":
                for k in ("prior_saving_percent", "ms_ssim_lost", "psnr_lost"):
                    point[k] = sum(r[k] for r in group) / len(group)
                point["ms_ssim_drop_lost"] = point["ms_ssim"] - point["ms_ssim_lost"]
                point["packets"], point["lost"] = group[0]["packets"], len(group[0]["packets_lost"])
                used = set().union(*(r["indices_used"] for r in group))
                point["codebook_utilization"] = len(used) / group[0]["codebook"]
            out["codecs"].setdefault(codec, {})[str(setting)] = point
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", default=",".join(f"kodim{i:02d}" for i in range(1, 25)))
    p.add_argument("--qualities", default="", help="vqgan qualities (default: every installed one)")
    p.add_argument("--packets", type=int, default=16)
    p.add_argument("--lost", type=int, default=3, help="packets dropped of --packets (3 of 16: 19 %%)")
    p.add_argument("--rows", type=Path, default=HERE / "vqgan_kodak.jsonl")
    p.add_argument("--out", type=Path, default=HERE / "vqgan_kodak.json")
    p.add_argument("--crops", type=Path, default=HERE / "results" / "vqgan-crops")
    p.add_argument("--crop-files", default="kodim04,kodim23")
    p.add_argument("--summary", action="store_true", help="only summarize the rows there are")
    args = p.parse_args()
    torch.set_num_threads(1)
    import neurocodec as nc

    rows = read_rows(args.rows)
    qualities = [int(q) for q in args.qualities.split(",") if q] or [
        q for info in nc.list_codecs() if info.name == "vqgan" for q in info.qualities
    ]
    if not args.summary:
        done = {(r["codec"], r["setting"], r["file"]) for r in rows}
        crop_files = set(args.crop_files.split(","))
        for name in args.files.split(","):
            x = read_image(KODAK / f"{name}.png")[0]
            panels, avif_panel = [centre(x)], None
            for codec_name, settings in LOWEST.items():
                for s in settings:
                    if (codec_name, s, name) in done and not (
                        name in crop_files and (codec_name, s) == ("avif", 0)
                    ):
                        continue
                    row, x_hat = baseline_row(x, name, codec_name, s)
                    if (codec_name, s, name) not in done:
                        append_row(args.rows, {**row, "codec": codec_name, "setting": s})
                    if (codec_name, s) == ("avif", 0):
                        avif_panel = centre(x_hat)
            for q in qualities:
                codec = nc.load("vqgan", quality=q)
                if ("vqgan", q, name) in done and name not in crop_files:
                    continue
                row, x_hat, _ = measure_vqgan(codec, x, name, args.packets, args.lost)
                if ("vqgan", q, name) not in done:
                    append_row(args.rows, {**row, "codec": "vqgan", "setting": q})
                    print(f"{name} q{q}: {row['bpp']:.4f} bpp, MS-SSIM {row['ms_ssim']:.4f} "
                          f"(lost {args.lost}/{args.packets}: {row['ms_ssim_lost']:.4f})", file=sys.stderr)  # fmt: skip
                panels.append(centre(x_hat))
            if name in crop_files:
                args.crops.mkdir(parents=True, exist_ok=True)
                strip = torch.cat([*panels, *([avif_panel] if avif_panel is not None else [])], dim=2)
                write_image(args.crops / f"{name}.png", strip, overwrite=True)
        rows = read_rows(args.rows)
    summary = summarize(rows)
    summary["machine"] = machine()
    summary["command"] = "OMP_NUM_THREADS=1 python eval/vqgan_kodak.py " + " ".join(sys.argv[1:])
    crops = args.crops.relative_to(HERE.parent) if args.crops.is_relative_to(HERE.parent) else args.crops
    summary["crops"] = (
        f"{crops}/<file>.png: original | vqgan q{qualities} | AVIF quality 0 (centre {CROP}x{CROP})"
    )
    summary["threads"] = os.environ.get("OMP_NUM_THREADS")
    write_json(args.out, summary)


if __name__ == "__main__":
    main()
