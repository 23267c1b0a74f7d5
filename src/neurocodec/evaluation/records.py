"""What a measurement record holds besides its numbers: the machine it ran on, and JSON that is
strict (no NaN or Infinity) and compact (a row per line), as ``neurocodec eval`` and
``neurocodec bench`` write it."""

from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path

__all__ = ["clean", "cpu_model", "machine", "to_json"]


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one), for benchmark records."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: str, media: str = "image") -> dict[str, object]:
    """The machine record of a run on ``device``: platform, CPU, Python, torch and its threads, the
    GPU on cuda, and the versions of the conventional codecs of ``media`` ("image", "audio" or "video")."""
    import torch

    from neurocodec.evaluation.baselines import audio_versions, versions, video_versions

    record: dict[str, object] = {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": device,
        **{"image": versions, "audio": audio_versions, "video": video_versions}[media](),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        record["gpu"] = torch.cuda.get_device_name()
    return record


def clean(value: object) -> object:
    """``value`` for strict, compact JSON: floats rounded to 6 decimals, and each non-finite one
    (the PSNR of a lossless file) as None."""
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def to_json(value: object, indent: str = "") -> str:
    """Indented JSON, with each object or list of plain values on one line (a row per file)."""
    flat = not isinstance(value, dict | list) or all(not isinstance(v, dict | list) for v in (
        value.values() if isinstance(value, dict) else value
    ))  # fmt: skip
    if flat:
        return json.dumps(value, ensure_ascii=False)
    inner = indent + " "
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(k)}: {to_json(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    return "[\n" + ",\n".join(f"{inner}{to_json(v, inner)}" for v in value) + f"\n{indent}]"
