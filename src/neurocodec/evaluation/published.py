"""Published Kodak rate-distortion curves, to compare our measured curves against.

Numbers others measured and published, copied here so a comparison needs no download: VTM
intra and BPG (CompressAI's conventional-codec results), CompressAI's own mbt2018-mean and
cheng2020-anchor (MSE-trained), and MLIC++ (the MLIC repository's Kodak results, the design our
``mlic`` follows). Each point is the mean over the 24 Kodak images: bpp from file sizes, PSNR
of RGB averaged in dB, MS-SSIM of RGB where the source gives it. ``../shared/research/``
(ecosystem.md §1.6, models.md §2) tabulates them with their sources.

They were not measured in our runs: CompressAI's learned models report PSNR of the float
reconstruction (0.003-0.065 dB above the 8-bit one we measure), and the VTM curve is the one
CompressAI ran (the VTM-9.1 path of its script), not the VTM-17 that MLIC's paper reports its
BD-rates against. Read a comparison as a placement, not as a same-run measurement.

:func:`compare_published` gives, for a measured curve, the BD-rate against each published curve
over the PSNR (or MS-SSIM) interval both cover, and the BD-PSNR over the rate interval both
cover; a curve that does not reach the other's quality range still gets a BD-PSNR when their
rates overlap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from neurocodec.evaluation.bd import bd_psnr, bd_rate, overlap
from neurocodec.evaluation.metrics import ms_ssim_db
from neurocodec.evaluation.rows import curve_points

__all__ = ["KODAK", "PublishedCurve", "compare_published"]


@dataclass(frozen=True)
class PublishedCurve:
    name: str
    source: str
    bpp: tuple[float, ...]
    psnr: tuple[float, ...]
    ms_ssim: tuple[float, ...] | None = None

    def curve(self) -> list[dict]:
        """The points as a :func:`neurocodec.evaluation.rows.mean_curve` (``bpp``, ``psnr``, ``ms_ssim``, ``ms_ssim_db``)."""
        points = []
        for i, (bpp, psnr) in enumerate(zip(self.bpp, self.psnr, strict=True)):
            point = {"setting": i + 1, "bpp": bpp, "psnr": psnr}
            if self.ms_ssim is not None:
                point["ms_ssim"] = self.ms_ssim[i]
                point["ms_ssim_db"] = ms_ssim_db(self.ms_ssim[i])
            points.append(point)
        return points


_COMPRESSAI = "CompressAI results/image/kodak/"
KODAK: dict[str, PublishedCurve] = {
    curve.name: curve
    for curve in (
        PublishedCurve(
            "VTM",
            _COMPRESSAI + "vtm.json (intra, QP 47..12; CompressAI's script, VTM-9.1 path)",
            (0.0482, 0.1125, 0.2458, 0.4905, 0.8748, 1.4308, 2.3246, 3.6326),
            (26.14, 28.49, 31.20, 34.26, 37.42, 40.42, 43.51, 46.59),
            (0.8606, 0.9177, 0.9561, 0.9781, 0.9888, 0.9939, 0.9969, 0.9987),
        ),
        PublishedCurve(
            "BPG",
            _COMPRESSAI + "bpg_444_x265_ycbcr.json (BPG 0.9.8, 4:4:4, QP 47..12)",
            (0.0678, 0.1610, 0.3516, 0.6847, 1.1997, 1.9297, 3.0579, 4.7031),
            (26.20, 28.68, 31.59, 34.86, 38.26, 41.48, 44.70, 47.63),
            (0.8686, 0.9242, 0.9611, 0.9808, 0.9905, 0.9949, 0.9975, 0.9988),
        ),
        PublishedCurve(
            "mbt2018-mean",
            _COMPRESSAI + "compressai-mbt2018-mean_mse_cuda.json (q1..q8, float reconstruction)",
            (0.1239, 0.1980, 0.3072, 0.4606, 0.6617, 0.9144, 1.2342, 1.6191),
            (27.699, 29.359, 31.129, 32.951, 34.968, 36.911, 38.838, 40.633),
            (0.9178, 0.9431, 0.9615, 0.9752, 0.9836, 0.9893, 0.9930, 0.9953),
        ),
        PublishedCurve(
            "cheng2020-anchor",
            _COMPRESSAI + "compressai-cheng2020-anchor_mse_cuda.json (q1..q6, float reconstruction)",
            (0.1196, 0.1838, 0.2710, 0.4174, 0.5945, 0.8057),
            (28.582, 29.969, 31.343, 33.390, 35.119, 36.704),
            (0.9236, 0.9465, 0.9629, 0.9758, 0.9841, 0.9893),
        ),
        PublishedCurve(
            "MLIC++",
            "MLIC repository results/kodak/mlicplusplus_mse.json (-13.39 % BD-rate vs VTM-17.0 there)",
            (0.1075, 0.1747, 0.2721, 0.4129, 0.5923, 0.8025),
            (29.16, 30.71, 32.33, 34.17, 35.82, 37.32),
        ),
    )
}


def compare_published(
    curve: Sequence[Mapping], published: Mapping[str, PublishedCurve] = KODAK, metric: str = "psnr"
) -> list[dict]:
    """``curve`` (a :func:`neurocodec.evaluation.rows.mean_curve`, the test) against each published curve (the
    anchor) that has ``metric`` ("psnr" or "ms-ssim"): ``{"anchor", "source", "bd_rate_percent",
    "quality_interval_db", "bd_quality_db", "rate_interval_bpp"}``; a delta the curves do not
    allow is None, with the reason under ``"no_bd_rate"`` or ``"no_bd_quality"``."""
    test = curve_points(curve, metric)
    rows = []
    for name, reference in published.items():
        anchor = curve_points(reference.curve(), metric)
        if len(anchor) < 2:
            continue  # the source gives no such points (MLIC++ has no MS-SSIM)
        row: dict[str, object] = {"anchor": name, "source": reference.source}
        row["quality_interval_db"] = overlap(anchor, test)
        row["rate_interval_bpp"] = overlap(*([(q, r) for r, q in points] for points in (anchor, test)))
        for key, delta, why in (
            ("bd_rate_percent", bd_rate, "no_bd_rate"),
            ("bd_quality_db", bd_psnr, "no_bd_quality"),
        ):
            try:
                row[key] = delta(anchor, test)
            except ValueError as e:
                row[key] = None
                row[why] = str(e)
        rows.append(row)
    return rows
