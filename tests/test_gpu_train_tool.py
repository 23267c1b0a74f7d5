"""tools/gpu_train.py: runs go back through the device's file limits (parts of 15 MiB, 64 MiB in all)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
from PIL import Image

from neurocodec.train.checkpoint import load_checkpoint
from neurocodec.train.trainer import TrainConfig, Trainer

TOOL = Path(__file__).resolve().parents[1] / "tools" / "gpu_train.py"


def _tool():
    spec = importlib.util.spec_from_file_location("gpu_train", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _train(root: Path, name: str) -> None:
    data = root / "data"
    if not data.exists():
        data.mkdir()
        pixels = np.random.default_rng(0).integers(0, 256, (72, 80, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(data / "a.png")
    cfg = TrainConfig(
        arch={"N": 8, "M": 12}, data=str(data), out=str(root / "runs" / name), steps=2, batch_size=1, crop=64,
    )  # fmt: skip
    Trainer(cfg).run(progress=False)


def test_runs_pack_into_parts_and_unpack_resumable(tmp_path, monkeypatch, one_thread):
    tool = _tool()
    for name in ("a", "b"):
        _train(tmp_path, name)
    monkeypatch.chdir(tmp_path)
    parts = tool.pack_runs(["runs/a", "runs/b", "runs/missing"], tmp_path / "OUT")
    assert len(parts) == 1 and parts[0].name == "runs.tar.part00"

    restored = tool.unpack(tmp_path / "OUT", tmp_path / "elsewhere")
    assert restored == ["runs/a", "runs/b"]
    original, meta = load_checkpoint(tmp_path / "runs" / "a" / "checkpoint")
    back, back_meta = load_checkpoint(tmp_path / "elsewhere" / "runs" / "a" / "checkpoint")
    assert back_meta["step"] == meta["step"] == 2 and back.keys() == original.keys()
    assert (tmp_path / "elsewhere" / "runs" / "a" / "log.jsonl").exists()


def test_moments_are_dropped_when_the_parts_would_not_fit(tmp_path, monkeypatch, one_thread):
    tool = _tool()
    for name in ("a", "b"):
        _train(tmp_path, name)
    monkeypatch.chdir(tmp_path)
    weights = sum(f.stat().st_size for f in (tmp_path / "runs" / "a" / "checkpoint").iterdir())
    monkeypatch.setattr(tool, "PART_BYTES", weights // 2)  # with moments the runs need more parts
    monkeypatch.setattr(tool, "MAX_PARTS", 2)
    parts = tool.pack_runs(["runs/a", "runs/b"], tmp_path / "OUT")
    assert len(parts) <= 2
    tool.unpack(tmp_path / "OUT", tmp_path / "back")
    kept = [load_checkpoint(tmp_path / "back" / "runs" / n / "checkpoint")[0] for n in ("a", "b")]
    assert any(not any(k.startswith("opt.") for k in t) for t in kept)  # a run lost its moments
    assert all(any(k.startswith("model.") for k in t) for t in kept)  # never its weights


def test_every_plan_in_tools_parses_and_its_weights_fit_the_returned_files(one_thread):
    """A plan is run on a lent GPU without a rehearsal: its arguments must parse, its runs must
    read the carried ``data_gpu`` folder, and their fp32 weights must fit the parts a call returns
    (Adam's moments, in bf16, come back only where they fit too; the tool drops them and says so)."""
    from neurocodec.cli import parser
    from neurocodec.cli.train import parse_arch
    from neurocodec.registry import trainable

    tool = _tool()
    plans = sorted(TOOL.parent.glob("gpu_plan*.json"))
    assert plans
    for plan in plans:
        runs = json.loads(plan.read_text())
        weight_bytes = 0
        for run in runs:
            args = parser().parse_args(["train", *run["args"], "--out", run["out"]])
            assert args.data == "data_gpu" and args.out.startswith("runs/"), plan
            model = trainable(args.model).build_model(parse_arch(args.arch) if args.arch else None)
            params = sum(p.numel() for p in model.parameters())
            weight_bytes += 4 * params
        assert weight_bytes <= tool.PART_BYTES * tool.MAX_PARTS, f"{plan.name}: the weights alone do not fit"
