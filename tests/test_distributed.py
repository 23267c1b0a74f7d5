"""Data-parallel training under torchrun (gloo, two CPU processes): the processes keep the same
weights, train what one process with the double batch trains, and resume exactly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ddp_worker import config
from neurocodec.train.data import AudioClips, ImageCrops, VideoClips
from neurocodec.train.distributed import SOLO, World, join
from neurocodec.train.trainer import Trainer
from test_train_harness import make_audio, make_video
from test_trainer import make_images, one_thread  # noqa: F401 (an autouse fixture)

WORKER = Path(__file__).with_name("ddp_worker.py")


def torchrun(*args, processes: int = 2) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(WORKER.parent)}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    done = subprocess.run([*command, *map(str, args)], env=env, capture_output=True, text=True, timeout=300)
    out = Path(args[3])  # the worker's OUT
    written = sorted(p.name for p in out.glob("rank*.safetensors")) if out.is_dir() else []
    assert done.returncode == 0, f"weights written: {written}\n{done.stderr[-3000:]}"


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def test_two_processes_train_what_one_trains_with_the_double_batch(tmp_path):
    data = make_images(tmp_path / "data", count=3, size=(80, 72))
    torchrun(WORKER, "toy-image", data, tmp_path / "two", 3, 3, 2)
    rank0, rank1 = (
        weights(tmp_path / "two" / "rank0.safetensors"),
        weights(tmp_path / "two" / "rank1.safetensors"),
    )
    for k in rank0:
        assert torch.equal(rank0[k], rank1[k]), k  # DDP keeps every process's weights the same

    one = Trainer(config("toy-image", str(data), str(tmp_path / "one"), 3, 4))
    one.run(progress=False)
    for k, v in one.model.state_dict().items():
        assert torch.allclose(rank0[k], v, rtol=1e-4, atol=1e-6), k
    # the log is written once, by process 0, with the mean over the processes
    logs = [json.loads(line) for line in (tmp_path / "two" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs] == [1, 2, 3]
    solo = [json.loads(line) for line in (tmp_path / "one" / "log.jsonl").read_text().splitlines()]
    for a, b in zip(logs, solo, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
    # the checkpoint holds both processes' RNG states
    meta = json.loads((tmp_path / "two" / "checkpoint" / "meta.json").read_text())
    assert meta["step"] == 3 and len(meta["processes"]) == 2


def test_data_parallel_resume_equals_uninterrupted(tmp_path):
    """The hyperprior (noise drawn per process): 4 steps, against 2 steps, a stop and 2 more."""
    data = make_images(tmp_path / "data", count=3, size=(80, 72))
    torchrun(WORKER, "hyperprior", data, tmp_path / "whole", 4, 4, 2)
    torchrun(WORKER, "hyperprior", data, tmp_path / "split", 4, 2, 2)
    torchrun(WORKER, "hyperprior", data, tmp_path / "split", 4, 4, 2)
    whole, split = (
        weights(tmp_path / "whole" / "rank0.safetensors"),
        weights(tmp_path / "split" / "rank1.safetensors"),
    )
    assert whole.keys() == split.keys()
    for k in whole:
        assert torch.equal(whole[k], split[k]), k


def test_without_a_launcher_training_is_one_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert join("cpu") == (SOLO, "cpu")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert join("cpu") == (SOLO, "cpu")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(ValueError, match="torchrun"):
        join("cpu")


def test_each_process_takes_its_rows_of_the_global_batch(tmp_path):
    """K processes with batch b see exactly the crops of one process with batch K*b, and every
    generator moves the same."""
    images = ImageCrops(make_images(tmp_path / "im"), crop=32)
    audio = AudioClips(make_audio(tmp_path / "au", count=2), samples=256)
    video = VideoClips(make_video(tmp_path / "vi", count=1, frames=5, size=(40, 48)), frames=2, crop=16)
    for dataset in (images, audio, video):
        gen = torch.Generator().manual_seed(4)
        whole = dataset.batch(6, gen)
        parts, states = [], {bytes(gen.get_state().numpy())}
        for rank in range(3):
            gen = torch.Generator().manual_seed(4)
            parts.append(dataset.batch(6, gen, World(rank, 3).rows(2)))
            states.add(bytes(gen.get_state().numpy()))
        assert torch.equal(torch.cat(parts), whole)
        assert len(states) == 1
    with pytest.raises(ValueError, match="contiguous slice"):
        images.batch(4, torch.Generator(), range(3, 6))
