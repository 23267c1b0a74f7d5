"""Cool-chic 5 (Orange-OpenSource/Cool-Chic, BSD-3) run on a Kodak image here, for c3 to compare with.

    python eval/coolchic_runs.py --coolchic DIR --tag TAG [--img kodim01] [--crop topleft|full]
        [--lmbda 0.004] [--n-itr 2000] [--cfg lop] [-- extra cc_encode.py arguments]
    python eval/coolchic_runs.py --parse WORKDIR --tag TAG ...   (record a run made by hand)
    python eval/coolchic_runs.py --score-c3 eval/c3_kodak_medium.jsonl --img kodim01 --lmbda 0.009051

``DIR`` is a checkout of Cool-chic (the rows were made with a6fe38a, the mirror's newest) whose
imports resolve (its requirements beside ours: einops, fvcore, ConfigArgParse, constriction 0.4.2,
e.g. ``pip install --target /tmp/ccpkgs ...`` and ``--pythonpath /tmp/ccpkgs``). Nothing of it is
in this repository: the script only runs its ``cc_encode.py`` on one thread with the decoder
config ``cfg/dec/intra/<cfg>.cfg`` and records, from its own result files, one row in
``eval/coolchic_runs.jsonl``: the file's bpp and PSNR as its decoder measured them, the networks'
and latents' rates as its encoder estimated them, MAC/pixel, its own timer of the fitting
(``train_s``, wall) and the CPU seconds of the whole run (``cpu_s``; for ``--parse``, from a
``/usr/bin/time -v`` report in the workdir's ``log.txt`` if there is one).

``cost`` is Cool-chic's loss as coded, ``MSE + lmbda * bpp`` (MSE of [0, 1] pixels), x 1000; c3's
``bpp + lambda * 255^2 * MSE`` with ``lambda = 1 / (255^2 lmbda)`` is the same loss divided by
``lmbda`` (``eval/c3_probe.py --cc`` takes Cool-chic's lambda), so a c3 probe row compares by
``1000 * (10^(-psnr/10) + lmbda * bpp)``.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

from common import EVAL, KODAK, append_row, read_rows

ROWS = EVAL / "coolchic_runs.jsonl"


def read_tsv(path: Path) -> dict[str, str]:
    """The first data row of one of Cool-chic's whitespace-separated result tables."""
    head, values = path.read_text().splitlines()[:2]
    return dict(zip(head.split(), values.split(), strict=False))


def parse(workdir: Path, args: argparse.Namespace, cpu_s: float | None) -> dict:
    enc = read_tsv(next(workdir.glob("*-results_encoder.tsv")))
    dec = read_tsv(next(workdir.glob("*-results_decoder.tsv")))
    psnr, bpp = float(dec["psnr_db"]), float(dec["rate_bpp"])
    return {
        "tag": args.tag, "img": args.img, "crop": args.crop, "lmbda": args.lmbda, "n_itr": args.n_itr,
        "cfg": args.cfg, "extra": " ".join(args.extra), "bpp": bpp, "psnr": psnr,
        "cost": 1000 * (10 ** (-psnr / 10) + args.lmbda * bpp),
        "bytes": (workdir / "out.bin").stat().st_size if (workdir / "out.bin").exists() else None,
        "nn_bpp_estimated": float(enc["nn_bpp"]), "latent_bpp_estimated": float(enc["latent_bpp"]),
        "mac_per_pixel": float(enc["mac_decoded_pixel"]), "train_s": float(enc["time_sec"]), "cpu_s": cpu_s, "threads": 1,
        "coolchic": args.commit,
    }  # fmt: skip


def table(tags: list[str], lmbda: float) -> None:
    """Cool-chic and c3 crop rows side by side: bpp, the latents' and networks' bpp, PSNR, the cost
    ``1000 (MSE + lmbda bpp)`` and ``whole``, the same with the networks' bits divided by 6 (a
    Kodak image has six times a 256x256 crop's pixels and about the same networks): on a crop the
    networks weigh six times what they do on the image, which hides what a larger decoder buys."""
    rows = {r["tag"]: r for path in (ROWS, EVAL / "c3_probe.jsonl") for r in read_rows(path)}
    for tag in tags:
        r = rows[tag]
        if "coolchic" in r:
            latents, networks = r["latent_bpp_estimated"], r["nn_bpp_estimated"]
        else:
            if not r["crop"]:
                raise SystemExit(f"{tag}: not a crop row")
            pixels = r["crop"] ** 2  # c3_probe's rows hold the crop's side
            latents, networks = 8 * r["latent_bytes"] / pixels, 8 * r["network_bytes"] / pixels
        mse = 10 ** (-r["psnr"] / 10)
        cost, whole = 1000 * (mse + lmbda * r["bpp"]), 1000 * (mse + lmbda * (latents + networks / 6))
        cpu = r.get("cpu_s") or r.get("enc_cpu_s") or 0
        print(
            f"{tag:28s} {r['bpp']:.4f} bpp (latents {latents:.4f}, networks {networks:.4f}) {r['psnr']:.3f} dB"
            f"  cost {cost:.4f}  whole {whole:.4f}  {cpu:.0f} CPU-s"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--coolchic", type=Path, help="a Cool-chic checkout")
    p.add_argument("--pythonpath", default="", help="where its extra requirements are")
    p.add_argument("--commit", default="a6fe38a", help="the checkout's commit, for the row")
    p.add_argument("--parse", type=Path, help="record this finished workdir instead of running")
    p.add_argument("--tag", help="the row's name (needed unless --score-c3)")
    p.add_argument("--img", default="kodim01")
    p.add_argument("--crop", choices=("topleft", "centre", "full"), default="topleft")
    p.add_argument("--lmbda", type=float, default=0.004)
    p.add_argument("--n-itr", type=int, default=2000)
    p.add_argument("--cfg", default="lop")
    p.add_argument(
        "--score-c3", type=Path, nargs="+", metavar="ROWS",
        help="no run: the cost at --lmbda of each c3 row of --img in these rows files (eval/c3_kodak.py's)",
    )  # fmt: skip
    p.add_argument(
        "--table", nargs="+", metavar="TAG",
        help="no run: these rows of this file and of eval/c3_probe.jsonl (crops, one --lmbda) with their "
        "cost and their cost projected to a whole Kodak image (networks' bits / 6)",
    )  # fmt: skip
    p.add_argument("extra", nargs="*", help="after --: more cc_encode.py arguments")
    args = p.parse_args()
    if args.table:
        return table(args.table, args.lmbda)
    if args.score_c3:
        for path in args.score_c3:
            for r in read_rows(path):
                if r["codec"] == "c3" and r["file"] == args.img:
                    cost = 1000 * (10 ** (-r["psnr"] / 10) + args.lmbda * r["bpp"])
                    print(
                        f"{path.name} q{r['setting']} {r['file']}: {r['bpp']:.4f} bpp {r['psnr']:.3f} dB, cost {cost:.4f}"
                    )
        return
    if not args.tag:
        p.error("--tag is needed")
    if args.parse:  # CPU seconds where the run was wrapped in /usr/bin/time -v (its report in log.txt)
        log = args.parse / "log.txt"
        times = re.findall(
            r"(?:User|System) time \(seconds\): ([\d.]+)", log.read_text() if log.exists() else ""
        )
        row = parse(args.parse, args, sum(map(float, times)) if times else None)
    else:
        if args.coolchic is None:
            p.error("--coolchic (or --parse) is needed")
        work = Path(tempfile.mkdtemp(prefix=f"coolchic-{args.tag}-"))
        image = KODAK / f"{args.img}.png"
        if args.crop != "full":  # the crops eval/c3_probe.py fits
            picture = Image.open(image)
            left, top = (
                ((picture.width - 256) // 2, (picture.height - 256) // 2) if args.crop == "centre" else (0, 0)
            )
            picture.crop((left, top, left + 256, top + 256)).save(work / f"{args.img}-crop.png")
            image = work / f"{args.img}-crop.png"
        cmd = [
            sys.executable, "cc_encode.py", "-i", str(image), "-o", str(work / "out.bin"),
            "--workdir", f"{work}/", "--lmbda", str(args.lmbda), "--n_itr", str(args.n_itr),
            "--dec_cfg_residue", f"cfg/dec/intra/{args.cfg}.cfg", *args.extra,
        ]  # fmt: skip
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{args.pythonpath}:{args.coolchic}")
        with (work / "log.txt").open("w") as log:
            subprocess.run(cmd, cwd=args.coolchic, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        row = parse(work, args, usage.ru_utime + usage.ru_stime)
        row["workdir"] = str(work)
    print(row)
    append_row(ROWS, row)


if __name__ == "__main__":
    main()
