"""Smoke test of eval/bench_entropy.py: quick mode, one repetition, in a subprocess (~10-15 s)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "eval" / "bench_entropy.py"


def test_bench_entropy_quick(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--reps-g", "1", "--reps-s", "1", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["mode"] == "quick"
    assert result["workloads"]["G"]["symbols"] == 100_000
    assert result["workloads"]["S"]["symbols"] == 1 << 20
    for key in ("cpu_model", "cpu_count", "versions"):
        assert key in result["machine"]
    rows = {(r["coder"], r["workload"], r["threads"]) for r in result["rows"]}
    for r in result["rows"]:  # every row was round-trip checked by the script (it asserts)
        assert r["enc_msym_s"] > 0 and r["dec_msym_s"] > 0 and r["bytes"] > 0
        assert -0.01 < r["overhead_pct"] < 5.0, r

    # A coder's rows are missing only when the script says why (not installed / not built).
    skipped = " ".join(result["skipped"])
    expected = {
        "neurocodec": [("neurocodec", wl, th) for wl in ("G", "S") for th in (1, 2)]
        + [("neurocodec + scale_index", "G", 1)],
        "constriction": [
            ("constriction AnsCoder QuantizedGaussian", "G", 1),
            ("constriction AnsCoder Categorical", "S", 1),
        ],
        "compressai": [
            ("compressai GaussianConditional", "G", 1),
            ("compressai RansEncoder (lists)", "S", 1),
        ],
    }
    for lib, keys in expected.items():
        if lib not in skipped:
            for key in keys:
                assert key in rows, (key, result["skipped"])
    names = [t["target"] for t in result["targets"]]
    assert len(names) == 8 and "G size vs Shannon" in names
    assert "| wl | coder |" in result["markdown"]
