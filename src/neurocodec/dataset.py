"""Encoding a dataset: many image or audio files -> .ncd files plus a manifest, mapped over local
worker processes by Ray Data (the optional extra: ``pip install 'neurocodec[ray]'``).

:func:`encode_dataset` (and ``neurocodec encode IN... -o OUT_DIR --workers N``) lists the
inputs (files, folders: every image and audio file below them, globs), puts them in a Ray Data
pipeline (``from_items`` -> ``map_batches`` with a pool of N workers, each loading its codec
once, one CPU and one torch thread each, or one GPU each with ``device="cuda"``), and each
worker writes its outputs atomically. The driver appends one JSON line per input to
``OUT_DIR/manifest.jsonl`` as results arrive: input, output, codec, quality, effort, status
(``done`` or ``error``), bytes, bpp (images) or kbit/s (audio), encoding seconds, ``kept`` (see
below) and the error.

Resuming: an input whose output exists and whose latest manifest line says ``done`` with the
same codec, quality and effort is skipped, so a killed run goes on where it stopped. An output
that exists without such a line (a killed run's workers may write a few files after the driver
stops) is encoded again and kept, as ``done`` with ``kept: true``, when it holds the same bytes
(encoding is deterministic); if it differs it is an error, and it is never replaced unless
``force``. A bad input (unreadable, corrupt, of a format no codec reads) is an ``error`` line,
never the end of the run.

Outputs are named as ``neurocodec encode -o DIR`` names them (``DIR/name.ncd``); the files of a
folder keep their path below it. The files are the same bytes the plain command writes.
Ray runs locally only: a new local instance on the loopback address (never a cluster that
``RAY_ADDRESS`` or ``ray start`` names), with usage reporting and the dashboard off, shut down at
the end; if this process has already started Ray, that instance is used as it is.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neurocodec.errors import ConfigError, MediaReadError, NeurocodecError, OutputError, OutputExistsError
from neurocodec.io import input_media
from neurocodec.io.files import audio_files, image_files

__all__ = ["MANIFEST", "DatasetSummary", "encode_dataset", "read_manifest"]

MANIFEST = "manifest.jsonl"
SUFFIX = ".ncd"
_INSTALL = "pip install 'neurocodec[ray]'"


@dataclass(frozen=True)
class DatasetSummary:
    """What a run of :func:`encode_dataset` did: inputs encoded, skipped (done before) and failed."""

    encoded: int
    skipped: int
    failed: int
    manifest: Path
    seconds: float


def _ray() -> Any:
    """Ray, imported with usage reporting off; a clear error when the extra is not installed."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # read at import: nothing leaves the machine
    try:
        import ray
        import ray.data
    except ImportError:
        raise ConfigError(f"encoding a dataset on Ray Data needs Ray: {_INSTALL}") from None
    return ray


def _inputs(inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[tuple[Path, Path]]:
    """(input file, its output path relative to the output directory), once each: a file as it is
    (``name.ncd``), a folder's images and audio files with their path below it, a glob's matches."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    found: dict[Path, Path] = {}
    for item in inputs:
        text = os.fspath(item)
        if os.path.isdir(text):
            root = Path(text)
            files = []
            for lister in (image_files, audio_files):
                try:
                    files += lister(root)
                except FileNotFoundError:
                    pass
            if not files:
                raise MediaReadError(f"no image or audio file under {root}")
            for path in sorted(files):
                found.setdefault(path, path.relative_to(root).with_suffix(SUFFIX))
        elif not os.path.lexists(text) and glob.has_magic(text):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                raise MediaReadError(f"no file matches {text}")
            for match in map(Path, matches):
                if not match.is_dir():
                    found.setdefault(match, Path(match.with_suffix(SUFFIX).name))
        else:  # a file, or a missing one: its line in the manifest says why it failed
            found.setdefault(Path(text), Path(Path(text).with_suffix(SUFFIX).name))
    names: dict[Path, Path] = {}
    for src, rel in found.items():
        if rel in names:
            raise OutputError(f"{names[rel]} and {src} would both be written to {rel}; give them other names")
        names[rel] = src
    return list(found.items())


def _settings(media: str, codec: str | None, quality: int | None, effort: int) -> tuple[str, int]:
    """The codec and quality that encode inputs of ``media``, checked against what is installed
    and against ``effort`` (the workers check the rest when they load the codec)."""
    from neurocodec.registry import _variant, default_codec, family

    name, quality, _ = _variant(codec or default_codec(media), quality)
    if effort and not family(name).codec.adaptive:
        raise ConfigError(f"{name} has no encoder-side adaptation: use effort 0")
    return name, quality


def read_manifest(path: Path) -> dict[str, dict[str, Any]]:
    """The latest line of each input in a manifest (none if it does not exist; a torn last line of a
    killed run is ignored)."""
    latest: dict[str, dict[str, Any]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return latest
    except OSError as e:
        raise MediaReadError(f"cannot read {path}: {e.strerror or e}") from None
    for line in lines:
        try:
            row = json.loads(line)
            latest[row["input"]] = row
        except (ValueError, KeyError, TypeError):
            continue
    return latest


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _ends_a_line(path: Path) -> bool:
    with path.open("rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def _row(src: Path, dst: Path, codec: str, quality: int, effort: int, **fields: Any) -> dict[str, Any]:
    return {
        "input": str(src), "output": str(dst), "codec": codec, "quality": quality, "effort": effort,
        "status": "error", "bytes": None, "bpp": None, "kbit_s": None, "seconds": None, "kept": False,
        "error": None,
        **fields,
    }  # fmt: skip


class _Encoder:
    """A Ray Data worker: loads each codec once (on first use), encodes a batch of inputs, writes
    each output atomically, and returns one manifest line (JSON) per input."""

    def __init__(self, effort: int, device: str, force: bool, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.effort, self.device, self.force = effort, device, force
        self.codecs: dict[tuple[str, int], Any] = {}

    def _codec(self, name: str, quality: int) -> Any:
        if (name, quality) not in self.codecs:
            from neurocodec.registry import load

            codec = load(name, quality, self.device)
            codec.check_effort(self.effort)
            self.codecs[name, quality] = codec
        return self.codecs[name, quality]

    def _encode(self, job: dict[str, Any]) -> dict[str, Any]:
        from neurocodec.container import AudioGeometry, ImageGeometry, peek_header
        from neurocodec.errors import UnsupportedMediaError
        from neurocodec.io import read_codec_input
        from neurocodec.io.atomic import write_atomic

        src, dst = Path(job["input"]), Path(job["output"])
        row = _row(src, dst, job["codec"], job["quality"], self.effort)
        try:
            codec = self._codec(job["codec"], job["quality"])
            media = input_media(src)
            if codec.media != media:
                raise UnsupportedMediaError(f"{codec.name} codes {codec.media}, not {media}")
            x, options = read_codec_input(src, media, codec.channels)
            start = time.perf_counter()
            data = codec.encode(x, effort=self.effort, **options)
            seconds = time.perf_counter() - start
            if job["existing"]:  # written by a killed run before its manifest line, or not ours
                if _read(dst) != data:
                    raise OutputExistsError(
                        f"{dst} already exists and is not what this run writes (use -f to replace it)"
                    )
                row["kept"] = True
            else:
                dst.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(dst, data, overwrite=self.force)
        except Exception as e:  # a bad input is a line of the manifest, never the end of the run
            message = " ".join(str(e).split()) or type(e).__name__
            if not isinstance(e, (NeurocodecError, OSError)):
                message = f"{type(e).__name__}: {message}"
            row["error"] = message if str(src) in message else f"{src}: {message}"
            return row
        g = peek_header(data).geometry
        bits = 8 * len(data)
        row.update(status="done", bytes=len(data), seconds=round(seconds, 4))
        if isinstance(g, ImageGeometry):
            row["bpp"] = round(bits / (g.height * g.width), 6)
        elif isinstance(g, AudioGeometry):
            row["kbit_s"] = round(bits * g.sample_rate / g.samples / 1000, 4)
        return row

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        jobs = [json.loads(text) for text in batch["job"]]
        return {"row": [json.dumps(self._encode(job)) for job in jobs]}


def _run_pipeline(
    jobs: list[dict[str, Any]], effort: int, workers: int, device: str, force: bool, verbose: bool
) -> Iterator[dict[str, Any]]:
    """The manifest lines of ``jobs``, as the workers finish them (in no set order)."""
    ray = _ray()
    gpus = 0
    if device != "cpu":
        from neurocodec.registry import resolve_device

        if resolve_device(device).type == "cuda":  # DeviceError when torch sees no GPU
            import torch

            gpus = 1
            workers = min(workers, torch.cuda.device_count())
    started = not ray.is_initialized()
    if started:
        ray.init(
            address="local", _node_ip_address="127.0.0.1", num_cpus=workers, include_dashboard=False,
            ignore_reinit_error=True, log_to_driver=False,
            logging_level=logging.INFO if verbose else logging.ERROR,
        )  # fmt: skip
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = context.print_on_execution_start = verbose
    data_logger = logging.getLogger("ray.data")
    level = data_logger.level
    data_logger.setLevel(logging.INFO if verbose else logging.ERROR)
    try:
        items = [{"job": json.dumps(job)} for job in jobs]
        with warnings.catch_warnings():
            # Ray Data's default restarts a dead worker and retries its file forever, so an input that
            # kills the process (or runs it out of memory) would loop: max_restarts=0 stops the run
            # instead, and a rerun resumes. Ray 2.60 takes it only among the deprecated remote args.
            warnings.simplefilter("ignore", DeprecationWarning)
            dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
                _Encoder,
                batch_size=1,
                compute=ray.data.ActorPoolStrategy(size=min(workers, len(items))),
                fn_constructor_kwargs={"effort": effort, "device": device, "force": force, "threads": 1},
                num_cpus=0 if gpus else 1,
                num_gpus=gpus,
                max_restarts=0,
            )
        try:
            for row in dataset.iter_rows():
                yield json.loads(row["row"])
        except ray.exceptions.RayError as e:
            message = " ".join(str(e).split())[:500]
            raise NeurocodecError(f"the Ray pipeline stopped ({message}); run again to resume") from None
    finally:
        data_logger.setLevel(level)
        if started:
            ray.shutdown()


def encode_dataset(
    inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    codec: str | None = None,
    quality: int | None = None,
    effort: int = 0,
    workers: int = 2,
    device: str = "cpu",
    force: bool = False,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    verbose: bool = False,
) -> DatasetSummary:
    """Encode every input into ``out_dir`` on ``workers`` Ray Data workers; see the module's doc.

    ``codec`` (default: the default codec of each input's media), ``quality`` and ``effort`` are
    those of :func:`neurocodec.load` and :meth:`~neurocodec.codecs.base.Codec.encode`; ``force``
    re-encodes everything and replaces existing outputs. ``on_result`` gets each manifest line
    as it arrives, and a line with status ``skipped`` for each input done before. Raises
    :class:`~neurocodec.errors.ConfigError` without Ray, and a
    :class:`~neurocodec.errors.NeurocodecError` for bad arguments (an unknown codec or quality,
    a folder or glob with no file, two inputs with one output name).
    """
    start = time.perf_counter()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a whole number >= 1, not {workers!r}")
    if isinstance(effort, bool) or not isinstance(effort, int) or effort < 0:
        raise ConfigError(f"effort must be a whole number of iterations >= 0, not {effort!r}")
    _ray()  # before any work: without the extra, say how to install it
    out = Path(out_dir)
    files = _inputs(inputs)
    medias = {input_media(src) for src, _ in files}
    settings = {media: _settings(media, codec, quality, effort) for media in medias}
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create {out}: {e.strerror or e}") from None
    manifest = out / MANIFEST
    done = read_manifest(manifest)
    report = on_result or (lambda row: None)
    counts = {"done": 0, "error": 0, "skipped": 0}
    jobs = []
    with manifest.open("a", encoding="utf-8") as log:
        if log.tell() and not _ends_a_line(manifest):
            log.write("\n")  # after the torn last line of a killed run

        def record(row: dict[str, Any]) -> None:
            if row["status"] != "skipped":
                log.write(json.dumps(row) + "\n")
                log.flush()
            counts[row["status"]] += 1
            report(row)

        for src, rel in files:
            src, dst = src.absolute(), (out / rel).absolute()
            name, q = settings[input_media(src)]
            before = done.get(str(src), {})
            same = (before.get("codec"), before.get("quality"), before.get("effort")) == (name, q, effort)
            if not force and before.get("status") == "done" and same and dst.exists():
                record({**before, "status": "skipped"})
            else:
                existing = not force and os.path.lexists(dst)
                jobs.append(
                    {"input": str(src), "output": str(dst), "codec": name, "quality": q, "existing": existing}
                )
        if jobs:
            for row in _run_pipeline(jobs, effort, workers, device, force, verbose):
                record(row)
    return DatasetSummary(
        counts["done"], counts["skipped"], counts["error"], manifest, time.perf_counter() - start
    )
