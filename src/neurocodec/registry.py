"""Codec names -> codec classes, shipped weights and their model cards.

Every weight file ships beside a JSON model card in ``neurocodec/weights/``; the card is a
:class:`WeightConfig`::

    {"codec": "hyperprior", "quality": 3, "media": "image",
     "filename": "hyperprior-q3.safetensors", "sha256": "<64 hex digits>",
     "arch": {"channels": 192},
     "model_card": {"training_data": "...", "steps": 2000000, "lambda": 0.0067,
                    "commit": "<git commit of the training code>",
                    "rd_kodak": [{"bpp": 0.42, "psnr": 31.2}]}}

A codec family is a module that defines a :class:`~neurocodec.codecs.base.Codec` subclass
decorated with :func:`register_codec`. Modules are imported lazily, from :data:`CODEC_MODULES`,
so ``import neurocodec`` stays fast and a codec whose module or weights are not there yet is
simply absent. Weights are read without unpickling (safetensors) and their SHA-256 is checked
against the card before use; nothing is downloaded.

Developer hooks (environment variables, read on every call):

- ``NEUROCODEC_WEIGHTS_PATH``: directories (separated by ``os.pathsep``) searched for model
  cards after the package's ``weights/``; a card's weight file lies beside it.
- ``NEUROCODEC_CODEC_MODULES``: extra ``name=module`` pairs, comma-separated, added to
  :data:`CODEC_MODULES` (e.g. ``test-lossless=toy_codec``).
- ``NEUROCODEC_PACKAGE_WEIGHTS=0``: ignore the package's own ``weights/`` (tests that need a
  registry holding only their own cards, whatever the release ships).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neurocodec.container import MAX_QUALITY, peek_header
from neurocodec.errors import DeviceError, UnknownCodecError, WeightsError

if TYPE_CHECKING:
    import torch

    from neurocodec.codecs.base import Codec

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
# Where each codec family lives; a new family adds one line.
CODEC_MODULES = {
    "hyperprior": "neurocodec.codecs.hyperprior",
    "mlic": "neurocodec.codecs.mlic",
    "walloc-image": "neurocodec.codecs.walloc",
    "walloc-audio": "neurocodec.codecs.walloc",
    "c3": "neurocodec.codecs.c3",
}
# Families that fit each file and ship no weight file: their class's ``weight_configs()`` lists
# one config per quality (``filename`` empty), so they load like any codec.
WEIGHTLESS_CODECS = ("c3",)
# Default codec per media type: the first of these with weights, else the first by name.
# mlic leads: its shipped weights beat the hyperprior's on Kodak (eval/results/kodak-mlic).
PREFERRED_CODECS = {"image": ("mlic", "hyperprior", "walloc-image"), "audio": ("walloc-audio",)}
MEDIA_TYPES = ("image", "audio", "video")

_CODEC_NAME = re.compile(r"[a-z0-9-]{1,32}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CACHE_SIZE = 4

_CODECS: dict[str, type[Codec]] = {}
_REGISTERED_WEIGHTS: list[WeightConfig] = []
_LOADED: dict[tuple[str, int, str, str], Codec] = {}


@dataclass(frozen=True)
class WeightConfig:
    """One shipped set of weights: which codec and quality, where, its hash and its model card.

    ``arch`` holds the codec's constructor arguments; ``model_card`` says how the weights were
    made (``training_data``, ``steps``, ``lambda``, ``commit``) and how they do
    (``rd_kodak``: a list of ``{"bpp": ..., "psnr": ...}`` on Kodak).
    """

    codec: str
    quality: int
    media: str
    filename: str
    sha256: str
    arch: dict[str, Any] = field(default_factory=dict, hash=False)
    model_card: dict[str, Any] = field(default_factory=dict, hash=False)
    directory: Path = WEIGHTS_DIR

    def __post_init__(self) -> None:
        if not isinstance(self.codec, str) or not _CODEC_NAME.fullmatch(self.codec):
            raise ValueError(f"codec must be 1..32 of [a-z0-9-], not {self.codec!r}")
        if not isinstance(self.quality, int) or not 0 <= self.quality <= MAX_QUALITY:
            raise ValueError(f"quality must be an int in 0..{MAX_QUALITY}, not {self.quality!r}")
        if self.media not in MEDIA_TYPES:
            raise ValueError(f"media must be one of {', '.join(MEDIA_TYPES)}, not {self.media!r}")
        if not isinstance(self.filename, str) or Path(self.filename).name != self.filename:
            raise ValueError(f"filename must be a file name without a directory, not {self.filename!r}")
        if not isinstance(self.sha256, str) or not _SHA256.fullmatch(self.sha256):
            raise ValueError(f"sha256 must be 64 lower-case hex digits, not {self.sha256!r}")
        if not isinstance(self.arch, dict) or not isinstance(self.model_card, dict):
            raise ValueError("arch and model_card must be JSON objects")
        number = (int, float)
        points = self.model_card.get("rd_kodak", [])
        if not isinstance(points, list) or not all(
            isinstance(p, dict) and isinstance(p.get("bpp"), number) and isinstance(p.get("psnr"), number)
            for p in points
        ):
            raise ValueError('model_card.rd_kodak must be a list of {"bpp": number, "psnr": number}')
        if not isinstance(self.model_card.get("lambda"), int | float | None):
            raise ValueError("model_card.lambda must be a number or null")

    @property
    def path(self) -> Path:
        return self.directory / self.filename

    @property
    def weights_hash(self) -> bytes:
        """The 4-byte hash files written with these weights carry (``container.weights_hash_of``)."""
        return bytes.fromhex(self.sha256[:8])

    @property
    def mse_lambda(self) -> float | None:
        """The card's lambda if the weights were trained for ``lambda * 255^2 * MSE + bpp`` (a card
        without a ``distortion`` is MSE), else None."""
        lmbda = self.model_card.get("lambda")
        mse = str(self.model_card.get("distortion", "MSE")).startswith("MSE")
        return float(lmbda) if lmbda is not None and mse else None

    @property
    def rd_points(self) -> list[dict[str, float]]:
        return list(self.model_card.get("rd_kodak", []))

    @classmethod
    def from_json(cls, path: Path) -> WeightConfig:
        """The config of a model card file; its weight file lies beside it."""
        try:
            card = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(card, dict):
                raise ValueError("not a JSON object")
            unknown = set(card) - {f.name for f in fields(cls) if f.name != "directory"}
            if unknown:
                raise ValueError(f"unknown keys {', '.join(sorted(unknown))}")
            return cls(**card, directory=path.parent)
        except (OSError, ValueError, TypeError) as e:
            raise WeightsError(f"invalid model card {path}: {e}") from None


@dataclass(frozen=True)
class CodecInfo:
    """An installed codec: its name, media type, default quality and weights (by quality)."""

    name: str
    media: str
    default_quality: int
    weights: tuple[WeightConfig, ...]

    @property
    def qualities(self) -> tuple[int, ...]:
        return tuple(w.quality for w in self.weights)


def register_codec(cls: type[Codec]) -> type[Codec]:
    """Class decorator: make a :class:`~neurocodec.codecs.base.Codec` subclass known by its ``name``."""
    if not _CODEC_NAME.fullmatch(getattr(cls, "name", "")) or getattr(cls, "media", None) not in MEDIA_TYPES:
        raise ValueError(f"{cls.__name__} needs a codec name of [a-z0-9-] and a media type")
    _CODECS[cls.name] = cls
    return cls


def register_weights(config: WeightConfig) -> None:
    """Make weights known without a model card file (after the cards, in call order)."""
    _REGISTERED_WEIGHTS.append(config)


# --------------------------------------------------------------------------------------------
# Discovery


def _env_list(variable: str, separator: str) -> list[str]:
    return [item.strip() for item in os.environ.get(variable, "").split(separator) if item.strip()]


def _codec_modules() -> dict[str, str]:
    modules = dict(CODEC_MODULES)
    for pair in _env_list("NEUROCODEC_CODEC_MODULES", ","):
        name, _, module = pair.partition("=")
        if not module.strip():
            raise UnknownCodecError(f"NEUROCODEC_CODEC_MODULES: {pair!r} is not name=module")
        modules[name.strip()] = module.strip()
    return modules


def weight_configs() -> list[WeightConfig]:
    """Every weight config: the package's cards, then ``NEUROCODEC_WEIGHTS_PATH``'s, then registered."""
    package = [] if os.environ.get("NEUROCODEC_PACKAGE_WEIGHTS", "1") == "0" else [WEIGHTS_DIR]
    directories = [*package, *map(Path, _env_list("NEUROCODEC_WEIGHTS_PATH", os.pathsep))]
    cards = [card for d in directories if d.is_dir() for card in sorted(d.glob("*.json"))]
    names = WEIGHTLESS_CODECS if package else ()  # part of the package, like its weights
    weightless = [c for name in names if (cls := _codec_class(name)) for c in cls.weight_configs()]
    return [WeightConfig.from_json(card) for card in cards] + weightless + _REGISTERED_WEIGHTS


def _codec_class(name: str) -> type[Codec] | None:
    """The registered class of ``name``, importing its module; None when it has none yet."""
    module = _codec_modules().get(name)
    if name not in _CODECS and module is not None:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name is None or not (module == e.name or module.startswith(e.name + ".")):
                raise  # the module exists but something it imports does not
            return None
        if name not in _CODECS:
            raise ImportError(f"{module} does not register a codec named {name!r}")
    return _CODECS.get(name)


def list_codecs() -> list[CodecInfo]:
    """The installed codecs (a registered module and at least one weight file), by name."""
    by_name: dict[str, dict[int, WeightConfig]] = {}
    for config in weight_configs():
        by_name.setdefault(config.codec, {}).setdefault(config.quality, config)  # the first one wins
    infos = []
    for name in sorted(by_name):
        cls = _codec_class(name)
        if cls is None:
            continue
        weights = tuple(by_name[name][q] for q in sorted(by_name[name]))
        for w in weights:
            if w.media != cls.media:
                raise WeightsError(
                    f"model card of {name} quality {w.quality} says {w.media}, the codec codes {cls.media}"
                )
        qualities = [w.quality for w in weights]
        default = cls.default_quality if cls.default_quality in qualities else qualities[len(qualities) // 2]
        infos.append(CodecInfo(name, cls.media, default, weights))
    return infos


def _installed() -> str:
    names = [info.name for info in list_codecs()]
    return f"installed: {', '.join(names)}" if names else "no codec is installed with weights yet"


def _info(name: str) -> CodecInfo:
    for info in list_codecs():
        if info.name == name:
            return info
    raise UnknownCodecError(f"unknown codec {name!r} ({_installed()})")


def _config(name: str, quality: int | None) -> WeightConfig:
    info = _info(name)
    quality = info.default_quality if quality is None else quality
    for config in info.weights:
        if config.quality == quality:
            return config
    raise UnknownCodecError(
        f"codec {name!r} has no quality {quality} (installed: {', '.join(map(str, info.qualities))})"
    )


def default_codec(media: str = "image") -> str:
    """The codec :func:`encode` and ``neurocodec encode`` use for ``media`` when none is named."""
    names = [info.name for info in list_codecs() if info.media == media]
    for name in PREFERRED_CODECS.get(media, ()):
        if name in names:
            return name
    if not names:
        raise UnknownCodecError(f"no {media} codec is installed with weights yet")
    return names[0]


# --------------------------------------------------------------------------------------------
# Loading


def _device(device: str | torch.device) -> torch.device:
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise DeviceError(f"unknown device {device!r} (use cpu or cuda)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device 'cuda' is not available: torch sees no CUDA GPU (use cpu)")
    return dev


def _read_weights(config: WeightConfig) -> dict[str, torch.Tensor]:
    """The tensors of a weight file, once its SHA-256 matches its card (safetensors: no pickle)."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_safetensors

    what = f"weights of {config.codec} quality {config.quality}"
    if not config.filename:  # a family without weights (WEIGHTLESS_CODECS)
        return {}
    try:
        data = config.path.read_bytes()
    except OSError as e:
        raise WeightsError(f"cannot read the {what}, {config.path}: {e.strerror or e}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != config.sha256:
        raise WeightsError(
            f"the {what}, {config.path}, are altered or corrupt: SHA-256 {digest[:16]}..., "
            f"the model card says {config.sha256[:16]}..."
        )
    try:
        return load_safetensors(data)
    except SafetensorError as e:
        raise WeightsError(f"the {what}, {config.path}, are not a valid safetensors file: {e}") from None


def _build(config: WeightConfig, device: str | torch.device) -> Codec:
    dev = _device(device)
    cls = _codec_class(config.codec)
    if cls is None:
        raise UnknownCodecError(f"unknown codec {config.codec!r} ({_installed()})")
    codec = cls.from_weights(config, _read_weights(config), dev)
    codec.quality, codec.weights_hash, codec.lmbda = config.quality, config.weights_hash, config.mse_lambda
    return codec.eval()


def load(name: str, quality: int | None = None, device: str | torch.device = "cpu") -> Codec:
    """A new codec with shipped weights: ``name`` at ``quality`` (default: the codec's default).

    Raises :class:`UnknownCodecError` (listing what is installed) for an unknown codec or
    quality, :class:`WeightsError` for a missing or altered weight file, and
    :class:`DeviceError` for a device this machine does not have.
    """
    return _build(_config(name, quality), device)


def _cached(config: WeightConfig, device: str | torch.device) -> Codec:
    """A codec of ``config`` on ``device``, shared by :func:`encode` and :func:`decode`."""
    key = (config.codec, config.quality, config.sha256, str(_device(device)))
    if key not in _LOADED:
        if len(_LOADED) >= _CACHE_SIZE:
            del _LOADED[next(iter(_LOADED))]
        _LOADED[key] = _build(config, device)
    return _LOADED[key]


def encode(
    x: torch.Tensor,
    codec: str | None = None,
    quality: int | None = None,
    device: str | torch.device = "cpu",
    effort: int = 0,
) -> bytes:
    """The bytes of a file coding image ``x`` with ``codec`` (default: :func:`default_codec`);
    ``effort``: see :meth:`~neurocodec.codecs.base.Codec.encode`."""
    return _cached(_config(codec or default_codec("image"), quality), device).encode(x, effort=effort)


def decode(data: bytes | bytearray | memoryview, device: str | torch.device = "cpu") -> torch.Tensor:
    """The reconstruction coded in a file, with the codec, quality and weights the file names."""
    header = peek_header(data)
    needs = (header.codec, header.quality, header.weights_hash)
    for config in weight_configs():
        if (config.codec, config.quality, config.weights_hash) == needs:
            return _cached(config, device).decode(data)
    same = [w for info in list_codecs() if info.name == header.codec for w in info.weights]
    installed = ", ".join(f"{w.codec} quality {w.quality} weights {w.weights_hash.hex()}" for w in same)
    raise UnknownCodecError(
        f"this file needs codec {header.codec!r} quality {header.quality} weights "
        f"{header.weights_hash.hex()}, which is not installed ({f'installed: {installed}' if same else _installed()})"
    )
