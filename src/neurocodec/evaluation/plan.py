"""What an evaluation runs: the codecs and baselines named, of one media, each with its settings,
on which files (:func:`plan_eval`, checked before anything is measured or written).

The codecs named are the tests (the rows of the BD-rate tables); the baselines (``baselines``,
default per media: :data:`DEFAULT_BASELINES`) are the anchors (the columns) and are measured too.
A learned codec runs at its shipped qualities (or ``qualities``), a baseline over its sweep (or
``sweeps[name]``). A problem with the request raises :class:`~neurocodec.errors.ConfigError`
(``neurocodec eval`` reports it as a usage error; the messages name its options, which are the
arguments of :func:`plan_eval` of the same names), an unknown name
:class:`~neurocodec.errors.UnknownCodecError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from neurocodec.errors import ConfigError, UnknownCodecError
from neurocodec.registry import CodecInfo, families, list_codecs, load

__all__ = ["DEFAULT_BASELINES", "EvalPlan", "baseline", "known_baselines", "plan_eval"]

DEFAULT_OUT_DIR = "neurocodec-eval"  # where eval writes without --out, in the current directory
DEFAULT_BASELINES = {"image": "jpeg,webp,avif,jpeg2000", "audio": "opus,mp3", "video": "x264,x265,svtav1"}


def known_baselines() -> dict[str, object]:
    """Every conventional codec by name: image, audio and video baselines."""
    from neurocodec.evaluation.baselines import AUDIO_BASELINES, BASELINES, VIDEO_BASELINES

    return {**BASELINES, **AUDIO_BASELINES, **VIDEO_BASELINES}


def baseline(name: str) -> object:
    """The baseline called ``name`` (ConfigError if there is none)."""
    known = known_baselines()
    if name not in known:
        raise ConfigError(f"unknown baseline {name!r} (known: {', '.join(known)})")
    return known[name]


@dataclass(frozen=True)
class EvalPlan:
    """A checked evaluation: ``entries`` ``(name, CodecInfo or baseline)`` in the order they run,
    ``settings`` per name (a learned codec without a quality asked for is left out), the
    ``tests`` and ``anchors`` of the BD-rate tables, ``notes`` for the user, the ``media``, the
    input ``paths`` (under ``data``), the learned codecs' ``effort``, the video ``frames`` (None:
    all) and the learned codecs' ``device``."""

    entries: tuple[tuple[str, object], ...]
    settings: Mapping[str, tuple]
    tests: tuple[str, ...]
    anchors: tuple[str, ...]
    notes: tuple[str, ...]
    media: str
    data: Path
    paths: tuple[Path, ...]
    effort: int = 0
    frames: int | None = None
    device: str = "cpu"

    def is_baseline(self, name: str) -> bool:
        return not isinstance(dict(self.entries)[name], CodecInfo)

    def default_out(self) -> Path:
        """``neurocodec-eval/<data>-<codecs>`` in the current directory: where ``neurocodec eval`` writes
        without --out (never into the source tree's eval/results/, which holds the committed results)."""
        return Path(DEFAULT_OUT_DIR, "-".join([self.data.resolve().name, *(n for n, _ in self.entries)]))


def _choose(
    names: Sequence[str], anchors: list[str] | None
) -> tuple[list[tuple[str, object]], list[str], list[str], list[str], str]:
    """The plan's entries, tests, anchors, notes and media from the names asked for."""
    known = known_baselines()
    installed = {info.name: info for info in list_codecs()}
    declared = {family.name: family for family in families()}
    entries: list[tuple[str, object]] = []
    notes: list[str] = []
    media: dict[str, str] = {}  # codec name -> its media
    for name in dict.fromkeys(names):
        if name in known:
            entries.append((name, known[name]))
            media[name] = known[name].media
        elif name in installed:
            entries.append((name, installed[name]))
            media[name] = installed[name].media
        elif name in declared:
            notes.append(f"{name} has no weights installed, so it is not evaluated")
            media[name] = declared[name].media
        else:
            known_names = ", ".join([*installed, *known])
            raise UnknownCodecError(f"unknown codec {name!r} (installed codecs and baselines: {known_names})")
    kinds = set(media.values())
    if len(kinds) > 1 or not kinds <= set(DEFAULT_BASELINES):
        listed = ", ".join(f"{name} ({kind})" for name, kind in media.items())
        raise ConfigError(f"eval compares codecs of one media (image, audio or video), not {listed}")
    kind = kinds.pop() if kinds else "image"
    if anchors is None:
        anchors = DEFAULT_BASELINES[kind].split(",")
    for name in anchors:
        if known[name].media != kind:
            article = "a" if known[name].media == "video" else "an"
            raise ConfigError(f"--baselines: {name} is {article} {known[name].media} codec, not {kind}")
    tests = [name for name, _ in entries]
    if notes and not any(name in installed for name in tests):
        notes.append("no learned codec has weights installed: evaluating the baselines only")
    entries += [(name, known[name]) for name in anchors if name not in tests]
    for name, what in entries:
        if name in known and not what.available:
            raise ConfigError(f"this Pillow was built without {name} (AVIF needs Pillow >= 11.3)")
    return entries, tests or anchors, anchors, notes, kind


def _settings(
    entries: list[tuple[str, object]],
    sweeps: Mapping[str, Sequence],
    qualities: Sequence[int] | None,
    notes: list[str],
) -> dict[str, tuple]:
    """A baseline's sweep, a learned codec's shipped qualities (those of ``qualities`` only)."""
    settings: dict[str, tuple] = {}
    for name, what in entries:
        if not isinstance(what, CodecInfo):
            settings[name] = tuple(sweeps.get(name, what.sweep))
            continue
        shipped = what.qualities
        chosen = shipped if qualities is None else tuple(q for q in qualities if q in shipped)
        missing = [q for q in qualities or () if q not in shipped]
        if missing:
            notes.append(
                f"{name} has no quality {', '.join(map(str, missing))} (shipped: {', '.join(map(str, shipped))})"
            )
        if chosen:
            settings[name] = chosen
    return settings


def plan_eval(
    codecs: Sequence[str],
    data: str | Path,
    *,
    baselines: Sequence[str] | None = None,
    qualities: Sequence[int] | None = None,
    sweeps: Mapping[str, Sequence] | None = None,
    limit: int | None = None,
    effort: int | str = 0,
    frames: int | None = None,
    device: str = "cpu",
) -> EvalPlan:
    """Check an evaluation of ``codecs`` (installed codecs and baselines, one media) on the files
    of ``data`` (a folder, searched recursively, or one file; the first ``limit``), and say what it
    runs. ``baselines``: the anchors (default: :data:`DEFAULT_BASELINES` of the media; ``[]``:
    none); ``frames``: the first frames of each video (default
    :data:`~neurocodec.evaluation.baselines.VIDEO_FRAMES`; 0: all). Loads each learned codec
    once when ``effort`` is given, to check that it adapts."""
    from neurocodec.evaluation.baselines import VIDEO_FRAMES
    from neurocodec.io import audio_files, image_files, video_files

    if limit is not None and limit < 1:
        raise ConfigError("--limit must be at least 1")
    if isinstance(effort, int) and effort < 0:
        raise ConfigError("--effort must be 0 or more")
    if frames is not None and frames < 0:
        raise ConfigError("--frames must be 0 (all) or more")
    anchors = None if baselines is None else list(dict.fromkeys(baselines))
    for name in anchors or ():
        try:
            baseline(name)
        except ConfigError as e:
            raise ConfigError(f"--baselines: {e}") from None
    entries, tests, anchors, notes, media = _choose(codecs, anchors)
    sweeps = dict(sweeps or {})
    for name, values in sweeps.items():
        try:
            baseline(name)
        except ConfigError as e:
            raise ConfigError(f"--sweep {name}={','.join(map(str, values))}: {e}") from None
    lister = {"image": image_files, "audio": audio_files, "video": video_files}[media]
    try:
        paths = lister(data)[:limit]
    except FileNotFoundError as e:
        raise ConfigError(f"--data: {e}") from None
    settings = _settings(entries, sweeps, qualities, notes)
    if effort:  # every learned codec must take it
        for name, chosen in settings.items():
            if isinstance(dict(entries)[name], CodecInfo):
                try:
                    load(name, chosen[0], device).check_effort(effort)
                except ConfigError as e:
                    raise ConfigError(f"--effort: {e}") from None
        what = f"the {effort} preset" if isinstance(effort, str) else f"{effort} iterations"
        notes.append(f"the learned codecs encode with {what} of adaptation or fitting (--effort)")
    frames = VIDEO_FRAMES if frames is None else frames or None
    if media == "video" and frames:
        notes.append(f"each video is coded from its first {frames} frames at most (--frames; 0: all)")
    from neurocodec.evaluation.metrics import missing_perceptual  # torch: not for `neurocodec --help`

    if media == "audio" and (missing := missing_perceptual()):
        notes.append(
            f"no perceptual scores (ViSQOL, PESQ, STOI): {', '.join(missing)} not installed "
            "(pip install 'neurocodec[audio-eval]')"
        )
    return EvalPlan(
        tuple(entries), settings, tuple(tests), tuple(anchors), tuple(notes), media, Path(data),
        tuple(paths), effort, frames, device,
    )  # fmt: skip
