"""Measuring an :class:`~neurocodec.evaluation.plan.EvalPlan`, file by file, in a run that can be
stopped and resumed.

Each finished unit of work (a learned codec at one quality on one file, or a baseline over its
sweep on one file) is appended at once to ``OUT/rows.jsonl`` (:data:`ROWS`) as one JSON line.
Run again into the same folder, the units already there are read back instead of measured,
so a stopped evaluation (interrupted, killed, out of time) resumes where it stopped and gives
the report an uninterrupted one would (its rows keep the times they were measured with). The
file's first line records what the rows depend on (media, data folder, effort, frames,
device); rows of another evaluation are refused, ``restart`` starts over.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path

from neurocodec.errors import ConfigError, OutputError
from neurocodec.evaluation.plan import EvalPlan

__all__ = ["ROWS", "RowStore", "measure"]

ROWS = "rows.jsonl"
FORMAT = 1


class RowStore:
    """``OUT/rows.jsonl``: the rows measured so far, by unit; :meth:`add` appends a unit's rows."""

    def __init__(self, path: Path, header: dict, restart: bool = False) -> None:
        self.path = path
        self.units: dict[str, list[dict]] = {}
        lines = [] if restart or not path.exists() else self._read()
        if not lines:
            self._write(json.dumps({"neurocodec_eval_rows": FORMAT, **header}) + "\n", "w")
            return
        try:
            first = json.loads(lines[0])
        except ValueError:
            first = None
        if first != {"neurocodec_eval_rows": FORMAT, **header}:
            raise ConfigError(
                f"{path} holds the rows of another evaluation (other data, media, effort, frames or "
                "device); use -f to start over"
            )
        for number, line in enumerate(lines[1:], start=2):
            try:
                unit = json.loads(line)
                self.units[unit["unit"]] = unit["rows"]
            except (ValueError, TypeError, KeyError):
                raise ConfigError(f"{path} is damaged at line {number}; use -f to start over") from None

    def _read(self) -> list[str]:
        """The complete lines of the file; a last line a killed run left half written is cut off."""
        try:
            text = self.path.read_text()
            if not text.endswith("\n"):
                text = text[: text.rfind("\n") + 1]
                self._write(text, "w")
        except (OSError, UnicodeDecodeError) as e:
            raise OutputError(f"cannot read {self.path}: {getattr(e, 'strerror', None) or e}") from None
        return text.splitlines()

    def _write(self, text: str, mode: str) -> None:
        try:
            with open(self.path, mode) as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise OutputError(f"cannot write {self.path}: {e.strerror or e}") from None

    def get(self, unit: str) -> list[dict] | None:
        return self.units.get(unit)

    def add(self, unit: str, rows: list[dict]) -> None:
        self.units[unit] = rows
        self._write(json.dumps({"unit": unit, "rows": rows}) + "\n", "a")


def _unit(name: str, weights: str | None, settings: tuple, path: Path, data: Path) -> str:
    """The key of a unit of work: codec, weights (learned codecs), settings and the file."""
    where = path.relative_to(data).as_posix() if path != data else path.name
    return json.dumps([name, weights, list(settings), where])


def _learned_rows(
    evaluate: Callable, codec: object, path: Path, quality: int, effort: int | str
) -> list[dict]:
    options = {"effort": effort} if effort else {}
    return [{"setting": quality, **row} for row in evaluate(codec, [path], **options)]


def measure(
    plan: EvalPlan, store: RowStore, progress: Callable[[str, int], None] | None = None
) -> dict[str, tuple[list[dict], dict[int, str]]]:
    """Every row of ``plan``, per codec: ``(rows, weights)``, the per-file rows (each with its
    ``setting``) in plan order and, for a learned codec, its weights hash per quality. Units in
    ``store`` are read back; the others are measured and added as each one finishes.
    ``progress(name, count)`` is called after each unit with the files times settings done."""
    from neurocodec.evaluation.baselines import evaluate_baseline
    from neurocodec.evaluation.rows import evaluate_audio, evaluate_images, evaluate_video
    from neurocodec.registry import load

    def done(name: str, unit: str, rows: Callable[[], list[dict]], count: int) -> list[dict]:
        found = store.get(unit)
        if found is None:
            found = rows()
            store.add(unit, found)
        if progress:
            progress(name, count)
        return found

    evaluate = {
        "audio": evaluate_audio,
        "image": evaluate_images,
        "video": partial(evaluate_video, frames=plan.frames),
    }[plan.media]
    results: dict[str, tuple[list[dict], dict[int, str]]] = {}
    for name, _ in plan.entries:
        if name not in plan.settings:
            continue
        settings = plan.settings[name]
        rows: list[dict] = []
        weights: dict[int, str] = {}
        if plan.is_baseline(name):
            for path in plan.paths:
                unit = _unit(name, None, settings, path, plan.data)
                run = partial(evaluate_baseline, name, [path], settings, frames=plan.frames)
                rows += done(name, unit, run, len(settings))
        else:
            for quality in settings:
                codec = load(name, quality, plan.device)
                weights[quality] = codec.weights_hash.hex()
                for path in plan.paths:
                    unit = _unit(name, weights[quality], (quality,), path, plan.data)
                    run = partial(_learned_rows, evaluate, codec, path, quality, plan.effort)
                    rows += done(name, unit, run, 1)
        results[name] = (rows, weights)
    return results
