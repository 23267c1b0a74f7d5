"""eval/common.py, the helpers every eval script shares: turns and warm-ups of the timing, the
machine record, the JSON writer."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "eval"))
from common import ROOT, best_of, command, interleaved, machine, write_json


def test_interleaved_takes_turns_and_leaves_out_the_warmup():
    calls: list[str] = []
    timings = interleaved(
        {"a": lambda: calls.append("a") or 1, "b": lambda: calls.append("b") or 2}, 3, warmup=1
    )
    assert calls == ["a", "b"] * 4  # one warm-up round, then 3 timed ones, the functions in turn
    assert {k: (len(t.wall), len(t.cpu), t.out) for k, t in timings.items()} == {
        "a": (3, 3, 1),
        "b": (3, 3, 2),
    }
    t = timings["a"]
    assert t.best == min(t.wall) and min(t.wall) <= t.median <= max(t.wall)
    assert set(t.summary()) == {"median_s", "min_s", "cpu_median_s", "cpu_min_s"}


def test_best_of_syncs_around_every_call():
    events: list[str] = []
    seconds, out = best_of(lambda: events.append("call") or "x", 2, sync=lambda: events.append("sync"))
    assert out == "x" and seconds >= 0
    assert events == ["sync", "call", "sync"] * 2


def test_the_machine_record_and_the_json(tmp_path, monkeypatch):
    record = machine()
    for key in (
        "cpu_model",
        "cpu_count",
        "platform",
        "versions",
        "torch_threads",
        "git_commit",
        "load_average",
    ):
        assert key in record
    assert {"python", "torch", "numpy"} <= set(record["versions"])
    monkeypatch.setattr(sys, "argv", [str(ROOT / "eval" / "x.py"), "--out", "a b.json"])
    assert command() == "python eval/x.py --out 'a b.json'"
    path = write_json(tmp_path / "sub" / "r.json", {"machine": record})
    assert json.loads(path.read_text()) == {"machine": record} and path.read_text().endswith("}\n")
