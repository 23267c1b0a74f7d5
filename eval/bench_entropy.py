#!/usr/bin/env python
"""Entropy-coder benchmark: neurocodec's rANS vs CompressAI and constriction, same data, one process.

Workloads (as in the research notes, shared/research/entropy.md §1; seed 12345):

- **G** (Gaussian conditional, the hyperprior case): ``n`` symbols ``round(y)``, ``y ~ N(0, s_i)``
  with ``s_i`` log-uniform in [0.11, 64] and zero means (``n`` = 1,000,000; 100,000 with
  ``--quick``).
- **S** (static histogram): i.i.d. bytes from one fixed 256-symbol pmf, a two-sided geometric
  around 40 (``p(k) ~ exp(-|k - 40| / 8.8)``, normalized, floored at 2e-5, renormalized);
  16 MiB (1 MiB with ``--quick``).

Coders, each on the same arrays, every row round-trip checked (``assert``):

- **neurocodec** (``neurocodec.entropy.coder``): 64 scale-indexed Gaussian tables from
  ``neurocodec.entropy.tables`` (built once before timing, like weights shipped with a model),
  ``threads=1`` and ``threads=2``. The main row times the coder on precomputed table indices;
  the ``+ scale_index`` row also times computing the indices from the scales (on both sides:
  the decoder needs them too).
- **CompressAI** ``GaussianConditional`` as its users call it: default 64-level scale table
  (``update_scale_table(get_scale_table())``), ``build_indexes`` (precomputed for the main row,
  included in the ``+ build_indexes`` row), ``compress`` / ``decompress`` on a (1, C, H, W) tensor.
  For S (informational, no target) its C++ ``RansEncoder``/``RansDecoder`` with one table from
  its ``pmf_to_quantized_cdf``, list conversion included.
- **constriction** ``stream.stack.AnsCoder``: ``QuantizedGaussian`` with the exact per-symbol
  scales (G), ``Categorical(pmf, perfect=False)`` (S).

CompressAI and constriction are single-threaded; torch is set to one thread for the whole run.
Timings: ``time.perf_counter``, best of 5 (G) / 3 (S) rounds, garbage collector off while
timing; within a workload the rounds are interleaved (every encoder, then every decoder, per
round), so load on a shared machine affects all coders alike. Size is compared with the Shannon information content under the *exact* model (G: the
unquantized N(0, s_i) for every symbol, float64 with erfc tails; S: the pmf).

Usage::

    python eval/bench_entropy.py            # full run, writes eval/bench_entropy.json
    python eval/bench_entropy.py --quick    # smoke test; writes JSON only with --out
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common import EVAL, best_of, load_average, machine, write_json

SEED = 12345
G_SCALE_MIN, G_SCALE_MAX = 0.11, 64.0
S_CENTER, S_DECAY, S_FLOOR = 40, 8.8, 2e-5
CONSTRICTION_RANGE = 512  # QuantizedGaussian support [-512, 512]; G's symbols stay far inside
TARGETS = {
    "G_enc_vs_compressai": 8.0,
    "G_dec_vs_compressai": 8.0,
    "G_enc_vs_constriction": 1.0,  # "faster than": ratio > 1
    "G_dec_vs_constriction": 1.0,
    "S_enc_vs_constriction": 1.0,  # "at least as fast": ratio >= 1
    "S_dec_vs_constriction": 3.0,
    "size_overhead_pct_max": 0.35,
}


# --------------------------------------------------------------------------------------------
# Workloads and the exact information content


def workload_g(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(scales float64, symbols int32): s log-uniform in [0.11, 64], symbols round(N(0, s))."""
    rng = np.random.default_rng(SEED)
    scales = np.exp(rng.uniform(math.log(G_SCALE_MIN), math.log(G_SCALE_MAX), n))
    y = rng.standard_normal(n) * scales
    return scales, np.rint(y).astype(np.int32)


def pmf_s() -> np.ndarray:
    k = np.arange(256, dtype=np.float64)
    p = np.exp(-np.abs(k - S_CENTER) / S_DECAY)
    p /= p.sum()
    p = np.maximum(p, S_FLOOR)
    return p / p.sum()


def workload_s(nbytes: int) -> tuple[np.ndarray, np.ndarray]:
    """(pmf float64[256], symbols int32): i.i.d. bytes from the fixed pmf."""
    rng = np.random.default_rng(SEED)
    pmf = pmf_s()
    cdf = np.cumsum(pmf)
    cdf[-1] = 1.0
    sym = np.searchsorted(cdf, rng.random(nbytes), side="right").astype(np.int32)
    return pmf, np.minimum(sym, 255)


def shannon_bits_g(symbols: np.ndarray, scales: np.ndarray) -> float:
    """sum of -log2 P(round(y) = k), y ~ N(0, s), exact in float64 (upper tails via erfc of |k|)."""
    k = torch.from_numpy(np.abs(symbols).astype(np.float64))
    sq = torch.from_numpy(scales.astype(np.float64)) * math.sqrt(2.0)
    p = 0.5 * (torch.special.erfc((k - 0.5) / sq) - torch.special.erfc((k + 0.5) / sq))
    nats = torch.where(k == 0, -torch.log1p(-torch.special.erfc(0.5 / sq)), -torch.log(p))
    if not bool(torch.isfinite(nats).all()):
        raise RuntimeError("information content underflowed: a symbol is too far in the tail")
    return float(nats.sum()) / math.log(2.0)


def shannon_bits_s(symbols: np.ndarray, pmf: np.ndarray) -> float:
    counts = np.bincount(symbols, minlength=len(pmf)).astype(np.float64)
    return float(-(counts * np.log2(pmf)).sum())


# --------------------------------------------------------------------------------------------
# Timing: contenders of one workload are timed interleaved (round r times every encoder, then
# every decoder), so a burst of load on a shared machine hits all of them alike and the ratios
# stay meaningful; each row keeps its best round.


@dataclass
class Contender:
    coder: str
    threads: int
    encode: Callable[[], Any]  # -> payload
    decode: Callable[[Any], Any]  # payload -> decoded symbols
    check: Callable[[Any], bool]  # decoded symbols == input (asserted every round)
    nbytes: Callable[[Any], int]  # payload -> compressed bytes
    note: str = ""
    # Optional table-index computation, timed in the same rounds; gives a second row whose
    # encode and decode times both include it (the decoder needs the indices too).
    index: Callable[[], Any] | None = None
    index_coder: str = ""
    index_note: str = ""


class Results:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.skipped: list[str] = []

    def add(self, coder, workload, threads, n, t_enc, t_dec, nbytes, shannon_bits, note=""):
        row = {
            "coder": coder,
            "workload": workload,
            "threads": threads,
            "symbols": n,
            "enc_s": t_enc,
            "dec_s": t_dec,
            "enc_msym_s": n / t_enc / 1e6,
            "dec_msym_s": n / t_dec / 1e6,
            "bytes": nbytes,
            "shannon_bytes": shannon_bits / 8,
            "overhead_pct": 100.0 * (8 * nbytes / shannon_bits - 1.0),
            "note": note,
        }
        self.rows.append(row)
        print(
            f"  {workload}  {coder:<46} t={threads}  enc {row['enc_msym_s']:8.2f} Msym/s"
            f"  dec {row['dec_msym_s']:8.2f} Msym/s  {nbytes:>11,d} B  {row['overhead_pct']:+.3f} %",
            flush=True,
        )
        return row

    def skip(self, msg: str) -> None:
        self.skipped.append(msg)
        print(f"  SKIPPED: {msg}", flush=True)

    def find(self, coder: str, workload: str, threads: int = 1) -> dict[str, Any] | None:
        for r in self.rows:
            if r["coder"] == coder and r["workload"] == workload and r["threads"] == threads:
                return r
        return None


def run_workload(res: Results, workload: str, contenders: list[Contender], n: int, shannon: float, reps: int):
    k = len(contenders)
    enc, dec, idx = [math.inf] * k, [math.inf] * k, [math.inf] * k
    payload: list[Any] = [None] * k
    for _ in range(reps):
        for i, c in enumerate(contenders):
            payload[i] = None
            t, payload[i] = best_of(c.encode, 1, gc_off=True)
            enc[i] = min(enc[i], t)
            if c.index is not None:
                idx[i] = min(idx[i], best_of(c.index, 1, gc_off=True)[0])
        for i, c in enumerate(contenders):
            t, out = best_of(lambda c=c, i=i: c.decode(payload[i]), 1, gc_off=True)
            dec[i] = min(dec[i], t)
            assert c.check(out), f"{c.coder} (threads={c.threads}) {workload}: round trip failed"
            del out
    for i, c in enumerate(contenders):
        nbytes = c.nbytes(payload[i])
        res.add(c.coder, workload, c.threads, n, enc[i], dec[i], nbytes, shannon, c.note)
        if c.index is not None:
            note = f"{c.index_note} ({idx[i] * 1e3:.1f} ms per call)"
            res.add(
                c.index_coder, workload, c.threads, n, enc[i] + idx[i], dec[i] + idx[i], nbytes, shannon, note
            )


# --------------------------------------------------------------------------------------------
# Coders

OURS = "neurocodec"
OURS_IDX = "neurocodec + scale_index"
CAI = "compressai GaussianConditional"
CAI_IDX = "compressai GaussianConditional + build_indexes"
CAI_S = "compressai RansEncoder (lists)"
CON_G = "constriction AnsCoder QuantizedGaussian"
CON_S = "constriction AnsCoder Categorical"


def load_ours():
    try:
        from neurocodec.entropy import coder
    except Exception as e:  # the C++ extension is not built
        return (
            None,
            f"neurocodec.entropy.coder unavailable ({type(e).__name__}: {e}); build with pip install -e .",
        )
    return coder, None


def ours_g(coder, scales, symbols, threads_list) -> tuple[list[Contender], dict[str, Any]]:
    from neurocodec.entropy.tables import gaussian_scale_table, gaussian_tables, scale_index

    t0 = time.perf_counter()
    table_scales = gaussian_scale_table()
    cdfs, offsets = gaussian_tables(table_scales)
    tables = coder.TableSet(cdfs, offsets)
    build_s = time.perf_counter() - t0
    idx = scale_index(scales, table_scales)  # precomputed once for the main rows
    out = []
    for th in threads_list:
        out.append(
            Contender(
                OURS,
                th,
                encode=lambda th=th: coder.encode(symbols, idx, tables, threads=th),
                decode=lambda data, th=th: coder.decode(data, idx, tables, threads=th),
                check=lambda v: np.array_equal(v, symbols),
                nbytes=len,
                note="coder on precomputed table indices",
                index=lambda: scale_index(scales, table_scales),
                index_coder=OURS_IDX,
                index_note="+ scale_index on both sides",
            )
        )
    info = {
        "table_levels": len(table_scales),
        "table_entries": int(sum(len(c) - 1 for c in cdfs)),
        "table_bytes_u16": int(2 * sum(len(c) - 1 for c in cdfs)),
        "table_build_s": build_s,
    }
    return out, info


def ours_s(coder, pmf, symbols, threads_list) -> list[Contender]:
    from neurocodec.entropy.tables import quantize_pmf

    cdf = quantize_pmf(np.append(pmf, 0.0))  # 256 byte values + an (unused) escape
    tables = coder.TableSet([cdf], np.zeros(1, dtype=np.int32))
    idx = np.zeros(len(symbols), dtype=np.int32)
    return [
        Contender(
            OURS,
            th,
            encode=lambda th=th: coder.encode(symbols, idx, tables, threads=th),
            decode=lambda data, th=th: coder.decode(data, idx, tables, threads=th),
            check=lambda v: np.array_equal(v, symbols),
            nbytes=len,
            note="one table, all indices 0",
        )
        for th in threads_list
    ]


def g_shape(n: int) -> tuple[int, int, int, int]:
    for c in (64, 32, 16, 8, 4, 2, 1):
        if n % c == 0:
            hw = n // c
            h = math.isqrt(hw)
            while hw % h:
                h -= 1
            return (1, c, h, hw // h)
    raise AssertionError


def compressai_g(res, scales, symbols) -> tuple[list[Contender], dict[str, Any] | None]:
    try:
        from compressai.entropy_models import GaussianConditional
        from compressai.models.base import get_scale_table
    except Exception as e:
        res.skip(f"compressai unavailable ({type(e).__name__}: {e})")
        return [], None
    gcond = GaussianConditional(None)
    gcond.update_scale_table(get_scale_table())  # runs update(): builds the quantized CDFs
    shape = g_shape(len(symbols))
    y = torch.from_numpy(symbols.astype(np.float32)).reshape(shape)
    sc = torch.from_numpy(scales.astype(np.float32)).reshape(shape)
    indexes = gcond.build_indexes(sc)  # precomputed once for the main row
    c = Contender(
        CAI,
        1,
        encode=lambda: gcond.compress(y, indexes),
        decode=lambda strings: gcond.decompress(strings, indexes),
        check=lambda out: torch.equal(out, y),
        nbytes=lambda strings: sum(len(s) for s in strings),
        note=f"input {shape}, precomputed indexes",
        index=lambda: gcond.build_indexes(sc),
        index_coder=CAI_IDX,
        index_note="+ build_indexes on both sides",
    )
    return [c], {
        "scale_levels": len(get_scale_table()),
        "cdf_entries_max": int(gcond._quantized_cdf.shape[1]),
    }


def compressai_s(res, pmf, symbols) -> list[Contender]:
    try:
        from compressai import ans
        from compressai.entropy_models.entropy_models import pmf_to_quantized_cdf
    except Exception as e:
        res.skip(f"compressai unavailable ({type(e).__name__}: {e})")
        return []
    prob = torch.from_numpy(np.append(pmf, 0.0))  # + compressai's tail (escape) entry
    cdf = pmf_to_quantized_cdf(prob, 16).tolist()
    cdfs, lengths, offsets = [cdf], [len(cdf)], [0]
    enc, dec = ans.RansEncoder(), ans.RansDecoder()
    n = len(symbols)
    return [
        Contender(
            CAI_S,
            1,
            encode=lambda: enc.encode_with_indexes(symbols.tolist(), [0] * n, cdfs, lengths, offsets),
            decode=lambda data: np.array(
                dec.decode_with_indexes(data, [0] * n, cdfs, lengths, offsets), np.int32
            ),
            check=lambda v: np.array_equal(v, symbols),
            nbytes=len,
            note="informational (no target); tolist() included",
        )
    ]


def constriction_g(res, scales, symbols) -> list[Contender]:
    try:
        import constriction
    except Exception as e:
        res.skip(f"constriction unavailable ({type(e).__name__}: {e})")
        return []
    r = CONSTRICTION_RANGE
    assert int(np.abs(symbols).max()) <= r
    model = constriction.stream.model.QuantizedGaussian(-r, r)
    means = np.zeros(len(symbols), dtype=np.float64)
    stds = np.ascontiguousarray(scales, dtype=np.float64)

    def encode():
        coder = constriction.stream.stack.AnsCoder()
        coder.encode_reverse(symbols, model, means, stds)
        return coder.get_compressed()

    return [
        Contender(
            CON_G,
            1,
            encode=encode,
            decode=lambda comp: constriction.stream.stack.AnsCoder(comp).decode(model, means, stds),
            check=lambda v: np.array_equal(v, symbols),
            nbytes=lambda comp: 4 * len(comp),
            note=f"exact scales, support [-{r}, {r}]",
        )
    ]


def constriction_s(res, pmf, symbols) -> list[Contender]:
    try:
        import constriction
    except Exception as e:
        res.skip(f"constriction unavailable ({type(e).__name__}: {e})")
        return []
    model = constriction.stream.model.Categorical(pmf, perfect=False)

    def encode():
        coder = constriction.stream.stack.AnsCoder()
        coder.encode_reverse(symbols, model)
        return coder.get_compressed()

    return [
        Contender(
            CON_S,
            1,
            encode=encode,
            decode=lambda comp: constriction.stream.stack.AnsCoder(comp).decode(model, len(symbols)),
            check=lambda v: np.array_equal(v, symbols),
            nbytes=lambda comp: 4 * len(comp),
            note="perfect=False",
        )
    ]


# --------------------------------------------------------------------------------------------
# Targets, report


def compute_targets(res: Results) -> list[dict[str, Any]]:
    out = []

    def ratio(name, ours, other, key, need, strict):
        if ours is None or other is None:
            out.append({"target": name, "ratio": None, "required": need, "pass": None, "why": "row missing"})
            return
        r = ours[key] / other[key]
        ok = r > need if strict else r >= need
        out.append(
            {
                "target": name,
                "ours": ours[key],
                "other": other[key],
                "ratio": r,
                "required": (">" if strict else ">=") + f" {need:g}",
                "pass": bool(ok),
            }
        )

    g, s = res.find(OURS, "G"), res.find(OURS, "S")
    cai, con_g, con_s = res.find(CAI, "G"), res.find(CON_G, "G"), res.find(CON_S, "S")
    ratio("G encode, ours/compressai (1 thread)", g, cai, "enc_msym_s", TARGETS["G_enc_vs_compressai"], False)
    ratio("G decode, ours/compressai (1 thread)", g, cai, "dec_msym_s", TARGETS["G_dec_vs_compressai"], False)
    ratio("G encode, ours/constriction (1 thread)", g, con_g, "enc_msym_s", 1.0, True)
    ratio("G decode, ours/constriction (1 thread)", g, con_g, "dec_msym_s", 1.0, True)
    ratio("S encode, ours/constriction (1 thread)", s, con_s, "enc_msym_s", 1.0, False)
    ratio(
        "S decode, ours/constriction (1 thread)",
        s,
        con_s,
        "dec_msym_s",
        TARGETS["S_dec_vs_constriction"],
        False,
    )
    lim = TARGETS["size_overhead_pct_max"]
    for name, row in (("G", g), ("S", s)):
        if row is None:
            out.append({"target": f"{name} size vs Shannon", "pass": None, "why": "row missing"})
        else:
            out.append(
                {
                    "target": f"{name} size vs Shannon",
                    "overhead_pct": row["overhead_pct"],
                    "required": f"<= {lim} %",
                    "pass": bool(row["overhead_pct"] <= lim),
                }
            )
    return out


def markdown_table(res: Results) -> str:
    lines = [
        "| wl | coder | threads | enc Msym/s | dec Msym/s | bytes | vs Shannon |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in res.rows:
        lines.append(
            f"| {r['workload']} | {r['coder']} | {r['threads']} | {r['enc_msym_s']:.1f} | {r['dec_msym_s']:.1f}"
            f" | {r['bytes']:,} | {r['overhead_pct']:+.3f} % |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="G 100k symbols, S 1 MiB (smoke test)")
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON output (default eval/bench_entropy.json; none with --quick)",
    )
    ap.add_argument("--reps-g", type=int, default=5)
    ap.add_argument("--reps-s", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts for our coder")
    args = ap.parse_args(argv)
    out_path = args.out if args.out is not None else (None if args.quick else EVAL / "bench_entropy.json")

    torch.set_num_threads(1)
    load_start = load_average()
    n_g = 100_000 if args.quick else 1_000_000
    n_s = (1 if args.quick else 16) * 2**20
    res = Results()
    extra: dict[str, Any] = {}
    coder, why = load_ours()
    if coder is None:
        res.skip(f"neurocodec rows: {why}")

    print(f"workload G: {n_g:,} symbols", flush=True)
    scales, sym_g = workload_g(n_g)
    sh_g = shannon_bits_g(sym_g, scales)
    print(f"  Shannon information (exact model): {sh_g / n_g:.4f} bits/sym = {sh_g / 8:,.0f} B", flush=True)
    contenders: list[Contender] = []
    if coder is not None:
        ours, extra["neurocodec_tables_G"] = ours_g(coder, scales, sym_g, args.threads)
        contenders += ours
    cai, extra["compressai_G"] = compressai_g(res, scales, sym_g)
    contenders += cai + constriction_g(res, scales, sym_g)
    run_workload(res, "G", contenders, n_g, sh_g, args.reps_g)
    del contenders, cai

    print(f"workload S: {n_s:,} bytes", flush=True)
    pmf, sym_s = workload_s(n_s)
    sh_s = shannon_bits_s(sym_s, pmf)
    print(f"  Shannon information (exact model): {sh_s / n_s:.4f} bits/sym = {sh_s / 8:,.0f} B", flush=True)
    contenders = ours_s(coder, pmf, sym_s, args.threads) if coder is not None else []
    contenders += constriction_s(res, pmf, sym_s) + compressai_s(res, pmf, sym_s)
    run_workload(res, "S", contenders, n_s, sh_s, args.reps_s)

    targets = compute_targets(res)
    print("\ntargets (ratios within this run):")
    if args.quick:
        print("  (the targets are defined for the full run; quick mode has 1 chunk per stream on G, so the")
        print("   fixed per-lane state bytes weigh ~3x more in the size overhead)")
    for t in targets:
        mark = {True: "PASS", False: "FAIL", None: "n/a "}[t["pass"]]
        if "ratio" in t and t.get("ratio") is not None:
            print(f"  {mark}  {t['target']}: {t['ratio']:.2f}x (need {t['required']})")
        elif "overhead_pct" in t:
            print(f"  {mark}  {t['target']}: {t['overhead_pct']:+.3f} % (need {t['required']})")
        else:
            print(f"  {mark}  {t['target']}: {t.get('why', '')}")
    md = markdown_table(res)
    print("\n" + md)

    result = {
        "benchmark": "eval/bench_entropy.py",
        "command": " ".join([Path(sys.executable).name, *sys.argv]) if argv is None else " ".join(argv),
        "mode": "quick" if args.quick else "full",
        "machine": {
            **machine(packages=("compressai", "constriction", "neurocodec")),
            "loadavg_start": load_start,
            "loadavg_end": load_average(),
        },
        "workloads": {
            "G": {
                "symbols": n_g,
                "seed": SEED,
                "scales": f"log-uniform in [{G_SCALE_MIN}, {G_SCALE_MAX}], zero means",
                "shannon_bits_per_symbol": sh_g / n_g,
                "shannon_bytes": sh_g / 8,
                "reps": args.reps_g,
            },
            "S": {
                "symbols": n_s,
                "seed": SEED,
                "pmf": f"exp(-|k-{S_CENTER}|/{S_DECAY}) over 0..255, normalized, floored at {S_FLOOR}, renormalized",
                "shannon_bits_per_symbol": sh_s / n_s,
                "shannon_bytes": sh_s / 8,
                "reps": args.reps_s,
            },
        },
        "timing": "time.perf_counter, best of reps, rounds interleaved across coders, gc disabled while "
        "timing; torch.set_num_threads(1); compressai and constriction are single-threaded",
        "rows": res.rows,
        "skipped": res.skipped,
        "targets": targets,
        "extra": extra,
        "markdown": md,
    }
    if out_path is not None:
        print()
        write_json(out_path, result, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
