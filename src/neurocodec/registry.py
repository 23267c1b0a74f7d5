"""The codec families and their weights: one table that ``neurocodec encode``, ``train``,
``export``, ``list`` and the Python API all read.

A codec family declares itself in its own module, on its codec class (a
:class:`~neurocodec.codecs.base.Codec` subclass, whose ``name`` goes into every file)::

    @register_codec(model=MeanScaleHyperprior, arch={"N": 128, "M": 192}, priority=20)
    class HyperpriorCodec(Codec):
        name = "hyperprior"
        media = "image"

The declaration (a :class:`CodecFamily`) says what the family codes, which network ``neurocodec
train NAME`` trains, with which default architecture and on what data, how it ranks as the
default codec of its media, and which qualities it builds without weight files (an overfitted
codec). Nothing else names a family: on the first query the registry imports every module of the
package ``neurocodec.codecs`` and every module an entry point of the group ``neurocodec.codecs``
names (how another installed package adds a family); ``import neurocodec`` imports none of them.
``docs/adding-a-codec.md`` has the steps.

Every weight file ships beside a JSON model card in ``neurocodec/weights/``; the card is a
:class:`WeightConfig`::

    {"codec": "hyperprior", "quality": 3, "media": "image",
     "filename": "hyperprior-q3.safetensors", "sha256": "<64 hex digits>",
     "arch": {"channels": 192},
     "model_card": {"training_data": "...", "steps": 2000000, "lambda": 0.0067,
                    "commit": "<git commit of the training code>",
                    "rd_kodak": [{"bpp": 0.42, "psnr": 31.2}]}}

A family is installed (:func:`list_codecs`) when it has a model card or declares ``qualities``.
Weights are read without unpickling (safetensors) and their SHA-256 is checked against the card
before use; nothing is downloaded.

Developer hooks (environment variables, read on every call):

- ``NEUROCODEC_WEIGHTS_PATH``: directories (separated by ``os.pathsep``) searched for model
  cards after the package's ``weights/``; a card's weight file lies beside it.
- ``NEUROCODEC_CODEC_MODULES``: more modules declaring families, comma-separated, importable
  from ``sys.path`` (e.g. ``toy_codec``: what an entry point does, without installing a package).
- ``NEUROCODEC_PACKAGE_WEIGHTS=0``: ignore the package's own ``weights/`` and the qualities its
  own families build without weights (tests that need a registry holding only their own cards,
  whatever the release ships).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neurocodec.container import DEFAULT_LIMITS, MAX_QUALITY, WEIGHTS_HASH_BYTES, Limits, peek_header
from neurocodec.errors import ConfigError, DeviceError, UnknownCodecError, WeightsError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from neurocodec.codecs.base import Codec

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
ENTRY_POINT_GROUP = "neurocodec.codecs"
MEDIA_TYPES = ("image", "audio", "video")

_CODEC_NAME = re.compile(r"[a-z0-9-]{1,32}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CACHE_SIZE = 4
_NO_WEIGHTS = bytes(WEIGHTS_HASH_BYTES)  # the weights hash of a codec built without weights

_FAMILIES: dict[str, CodecFamily] = {}
_REGISTERED_WEIGHTS: list[WeightConfig] = []
_LOADED: dict[tuple[str, int, str, str], Codec] = {}
_DISCOVERED = False
_UNIMPORTABLE: set[str] = set()  # plug-in modules already warned about


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


class CodecFamily:
    """A codec family's declaration: the one row of the registry's table each family has.

    - ``name``, ``media``: the codec's name (written into every file) and what it codes;
    - ``codec``: its :class:`~neurocodec.codecs.base.Codec` class; None for a network that
      trains before its codec exists (``neurocodec export`` then refuses it);
    - ``model``: the network ``neurocodec train NAME`` trains, built as ``model(**arch)``
      (None: not trainable); ``codec(**arch)`` must build the same network as its ``model``
      attribute, which is what ``neurocodec export`` saves;
    - ``arch``: the architecture ``neurocodec train`` uses when ``--arch`` is not given;
    - ``data``: what it trains on, "image", "audio" or "video" (default: ``media``);
    - ``priority``: the default codec of a media is the installed family of highest priority
      (ties: the first by name);
    - ``qualities``: the qualities :func:`load` builds without a weight file, as
      ``codec(quality=q)`` (an overfitted codec whose quality sets its lambda); files it writes
      carry the weights hash 00000000.

    A model trains with :class:`~neurocodec.train.trainer.Trainer` when its ``forward(x)`` returns::

        {"x_hat": reconstruction (same shape as x),
         "likelihoods": {name: tensor of per-symbol likelihoods, ...},   # the rate, in bits
         "loss_terms": {name: scalar tensor, ...}}                        # optional

    ``loss_terms`` are added to ``distortion + lambda * rate`` as they are (the model weights
    them itself) and each is logged under its name. A model may have an ``aux_loss()``: it trains
    its parameters whose names end in ``quantiles`` on their own optimizer. Inputs are images
    ``(N, 3, H, W)`` or videos ``(N, 3, T, H, W)`` in ``[0, 1]``, or audio ``(N, C, T)`` in ``[-1, 1]``.
    """

    __slots__ = ("arch", "codec", "data", "media", "model", "name", "priority", "qualities")
    # A plain class, not a dataclass: declaring one costs ``import neurocodec`` about 1 ms.

    def __init__(
        self,
        name: str,
        media: str,
        codec: type[Codec] | None = None,
        model: Callable[..., nn.Module] | None = None,
        arch: dict[str, Any] | None = None,
        data: str = "",
        priority: int = 0,
        qualities: Iterable[int] = (),
    ) -> None:
        if not isinstance(name, str) or not _CODEC_NAME.fullmatch(name):
            raise ValueError(f"a codec name is 1..32 of [a-z0-9-], not {name!r}")
        if media not in MEDIA_TYPES:
            raise ValueError(f"media must be one of {', '.join(MEDIA_TYPES)}, not {media!r}")
        data = data or media
        if data not in MEDIA_TYPES:
            raise ValueError(f"data must be one of {', '.join(MEDIA_TYPES)}, not {data!r}")
        if codec is not None and (codec.name, codec.media) != (name, media):
            raise ValueError(f"{codec.__name__} is {codec.name!r} ({codec.media}), not {name!r} ({media})")
        qualities = tuple(sorted(set(qualities)))
        if not all(isinstance(q, int) and 0 <= q <= MAX_QUALITY for q in qualities):
            raise ValueError(f"qualities must be ints in 0..{MAX_QUALITY}, not {qualities!r}")
        self.name, self.media, self.codec, self.model = name, media, codec, model
        self.arch, self.data, self.priority, self.qualities = dict(arch or {}), data, priority, qualities

    def __repr__(self) -> str:
        what = ", ".join(
            f"{k}={getattr(self, k)!r}" for k in ("codec", "model", "data", "priority", "qualities")
        )
        return f"CodecFamily({self.name!r}, {self.media!r}, {what})"

    def build_model(self, arch: dict[str, Any] | None = None) -> nn.Module:
        """The network ``neurocodec train`` trains, of architecture ``arch`` (default: :attr:`arch`)."""
        if self.model is None:
            raise ConfigError(f"{self.name} declares no model to train")
        arch = self.arch if arch is None else arch
        try:
            return self.model(**arch)
        except TypeError as e:  # an architecture key the model does not take
            raise ConfigError(f"{self.name}: bad architecture {arch}: {e}") from None


@dataclass(frozen=True)
class CodecInfo:
    """An installed codec: its name, media type, default quality, the qualities it loads and the
    weights of those that have weight files (by quality)."""

    name: str
    media: str
    default_quality: int
    weights: tuple[WeightConfig, ...]
    qualities: tuple[int, ...]

    def weights_of(self, quality: int) -> WeightConfig | None:
        """The weights of ``quality``; None when it is built without weights (or not installed)."""
        return next((w for w in self.weights if w.quality == quality), None)


def register_family(family: CodecFamily) -> CodecFamily:
    """Add ``family`` to the table (a module's declaration; :func:`register_codec` is the usual form).

    Declaring a name again from another class is an error; the same class again (a module
    imported twice) replaces the row."""
    old = _FAMILIES.get(family.name)
    if old is not None and _origin(old) != _origin(family):
        raise ValueError(f"codec {family.name!r} is declared twice: by {_origin(old)} and {_origin(family)}")
    _FAMILIES[family.name] = family
    return family


def _origin(family: CodecFamily) -> str:
    what = family.codec or family.model
    return f"{what.__module__}.{what.__qualname__}" if what is not None else "nothing"


def register_codec(
    cls: type[Codec] | None = None,
    *,
    model: Callable[..., nn.Module] | None = None,
    arch: dict[str, Any] | None = None,
    data: str = "",
    priority: int = 0,
    qualities: tuple[int, ...] = (),
):
    """Class decorator declaring a codec family: the class's ``name`` and ``media``, and the rest of
    a :class:`CodecFamily` as keywords: ``@register_codec`` or ``@register_codec(model=..., ...)``."""

    def declare(codec: type[Codec]) -> type[Codec]:
        name, media = getattr(codec, "name", None), getattr(codec, "media", None)
        if not isinstance(name, str) or not _CODEC_NAME.fullmatch(name) or media not in MEDIA_TYPES:
            raise ValueError(f"{codec.__name__} needs a codec name of [a-z0-9-] and a media type")
        register_family(CodecFamily(name, media, codec, model, arch or {}, data, priority, qualities))
        return codec

    return declare if cls is None else declare(cls)


def register_weights(config: WeightConfig) -> None:
    """Make weights known without a model card file (after the cards, in call order)."""
    _REGISTERED_WEIGHTS.append(config)


# --------------------------------------------------------------------------------------------
# Discovery


def _env_list(variable: str, separator: str) -> list[str]:
    return [item.strip() for item in os.environ.get(variable, "").split(separator) if item.strip()]


def _import_plugin(module: str, origin: str) -> None:
    """Import a family module named from outside the package; one that fails is skipped with a
    warning (once), so a broken plug-in never breaks the codecs that work."""
    if module in _UNIMPORTABLE:
        return
    try:
        importlib.import_module(module.partition(":")[0])
    except Exception as e:  # whatever a plug-in raises, the codecs that work keep working
        _UNIMPORTABLE.add(module)
        warnings.warn(
            f"neurocodec: {origin} names the codec module {module!r}, which fails to import: {e}",
            stacklevel=4,
        )


def _discover() -> None:
    """Import the modules that declare families: once the package's ``neurocodec.codecs`` modules
    and the entry points' modules, and on every call those of ``NEUROCODEC_CODEC_MODULES``."""
    global _DISCOVERED
    if not _DISCOVERED:
        import pkgutil
        from importlib.metadata import entry_points

        import neurocodec.codecs as package

        _DISCOVERED = True  # a module that queries the registry while it is imported sees what is there
        try:
            for module in pkgutil.iter_modules(package.__path__, f"{package.__name__}."):
                if not module.name.rpartition(".")[2].startswith("_"):
                    importlib.import_module(module.name)
        except BaseException:
            _DISCOVERED = False  # the next query tries again (and fails the same way)
            raise
        for point in entry_points(group=ENTRY_POINT_GROUP):
            _import_plugin(point.value, f"the entry point {point.name!r} of {ENTRY_POINT_GROUP}")
    for module in _env_list("NEUROCODEC_CODEC_MODULES", ","):
        _import_plugin(module, "NEUROCODEC_CODEC_MODULES")


def families() -> list[CodecFamily]:
    """Every declared codec family, installed or not (weights may be missing), by name."""
    _discover()
    return [_FAMILIES[name] for name in sorted(_FAMILIES)]


def family(name: str) -> CodecFamily:
    """The declaration of codec family ``name``; :class:`UnknownCodecError` lists the known ones."""
    _discover()
    try:
        return _FAMILIES[name]
    except KeyError:
        raise UnknownCodecError(
            f"unknown codec {name!r} (known: {', '.join(sorted(_FAMILIES)) or 'none'})"
        ) from None


def trainable(name: str) -> CodecFamily:
    """The family ``neurocodec train NAME`` trains; :class:`ConfigError` lists the trainable ones."""
    models = {f.name: f for f in families() if f.model is not None}
    found = models.get(name)
    if found is None:
        known = ", ".join(models)
        raise ConfigError(f"no trainable model named {name!r} (known: {known})")
    return found


def _package_weights() -> bool:
    """Whether the package's own weights (and its families' weightless qualities) are visible."""
    return os.environ.get("NEUROCODEC_PACKAGE_WEIGHTS", "1") != "0"


def weight_configs() -> list[WeightConfig]:
    """Every weight config: the package's cards, then ``NEUROCODEC_WEIGHTS_PATH``'s, then registered."""
    package = [WEIGHTS_DIR] if _package_weights() else []
    directories = [*package, *map(Path, _env_list("NEUROCODEC_WEIGHTS_PATH", os.pathsep))]
    cards = [card for d in directories if d.is_dir() for card in sorted(d.glob("*.json"))]
    return [WeightConfig.from_json(card) for card in cards] + _REGISTERED_WEIGHTS


def list_codecs() -> list[CodecInfo]:
    """The installed codecs (a declared family with a model card or declared qualities), by name."""
    by_name: dict[str, dict[int, WeightConfig]] = {}
    for config in weight_configs():
        by_name.setdefault(config.codec, {}).setdefault(config.quality, config)  # the first one wins
    infos = []
    for declared in families():
        if declared.codec is None:
            continue
        shipped = by_name.get(declared.name, {})
        for w in shipped.values():
            if w.media != declared.media:
                raise WeightsError(
                    f"model card of {declared.name} quality {w.quality} says {w.media}, the codec codes {declared.media}"
                )
        built = (
            declared.qualities
            if _package_weights() or not _origin(declared).startswith("neurocodec.")
            else ()
        )
        qualities = sorted({*shipped, *built})
        if not qualities:
            continue
        default = declared.codec.default_quality
        default = default if default in qualities else qualities[len(qualities) // 2]
        weights = tuple(shipped[q] for q in sorted(shipped))
        infos.append(CodecInfo(declared.name, declared.media, default, weights, tuple(qualities)))
    return infos


def _installed() -> str:
    names = [info.name for info in list_codecs()]
    return f"installed: {', '.join(names)}" if names else "no codec is installed with weights yet"


def codec_info(name: str) -> CodecInfo:
    """The installed codec ``name``; :class:`UnknownCodecError` lists the installed ones."""
    for info in list_codecs():
        if info.name == name:
            return info
    raise UnknownCodecError(f"unknown codec {name!r} ({_installed()})")


def _variant(name: str, quality: int | None) -> tuple[str, int, WeightConfig | None]:
    """What :func:`load` builds: the codec, the quality and its weights (None: built without)."""
    info = codec_info(name)
    quality = info.default_quality if quality is None else quality
    if quality not in info.qualities:
        raise UnknownCodecError(
            f"codec {name!r} has no quality {quality} (installed: {', '.join(map(str, info.qualities))})"
        )
    return name, quality, info.weights_of(quality)


def default_codec(media: str = "image") -> str:
    """The codec :func:`encode` and ``neurocodec encode`` use for ``media`` when none is named:
    the installed family of that media with the highest ``priority`` (ties: the first by name)."""
    candidates = [family(info.name) for info in list_codecs() if info.media == media]
    if not candidates:
        raise UnknownCodecError(f"no {media} codec is installed with weights yet")
    return max(candidates, key=lambda f: f.priority).name  # max keeps the first of equals


# --------------------------------------------------------------------------------------------
# Loading


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a :class:`torch.device` this machine has; :class:`DeviceError` otherwise."""
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


def _build(name: str, quality: int, config: WeightConfig | None, device: str | torch.device) -> Codec:
    dev = resolve_device(device)
    cls = family(name).codec
    if config is None:  # a quality the family builds without weights
        codec = cls(quality=quality).to(dev)
        codec.quality = quality
        return codec.eval()
    codec = cls.from_weights(config, _read_weights(config), dev)
    codec.quality, codec.weights_hash, codec.lmbda = config.quality, config.weights_hash, config.mse_lambda
    return codec.eval()


def load(name: str, quality: int | None = None, device: str | torch.device = "cpu") -> Codec:
    """A new codec: ``name`` at ``quality`` (default: the codec's default), with its shipped weights.

    Raises :class:`UnknownCodecError` (listing what is installed) for an unknown codec or
    quality, :class:`WeightsError` for a missing or altered weight file, and
    :class:`DeviceError` for a device this machine does not have.
    """
    return _build(*_variant(name, quality), device)


def _cached(name: str, quality: int, config: WeightConfig | None, device: str | torch.device) -> Codec:
    """A codec of ``name`` at ``quality`` on ``device``, shared by :func:`encode` and :func:`decode`."""
    key = (name, quality, config.sha256 if config else "", str(resolve_device(device)))
    if key not in _LOADED:
        if len(_LOADED) >= _CACHE_SIZE:
            del _LOADED[next(iter(_LOADED))]
        _LOADED[key] = _build(name, quality, config, device)
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
    return _cached(*_variant(codec or default_codec("image"), quality), device).encode(x, effort=effort)


def decode(
    data: bytes | bytearray | memoryview, device: str | torch.device = "cpu", limits: Limits = DEFAULT_LIMITS
) -> torch.Tensor:
    """The reconstruction coded in a file, with the codec, quality and weights the file names.
    ``limits``: the resource policy (:class:`~neurocodec.container.Limits`), checked before the
    codec is loaded or anything allocated; ``container.NO_LIMITS`` turns it off."""
    header = peek_header(data, limits)
    needs = (header.codec, header.quality, header.weights_hash)
    for config in weight_configs():
        if (config.codec, config.quality, config.weights_hash) == needs:
            return _cached(config.codec, config.quality, config, device).decode(data, limits)
    same = [info for info in list_codecs() if info.name == header.codec]
    if same and header.weights_hash == _NO_WEIGHTS and header.quality in family(header.codec).qualities:
        return _cached(header.codec, header.quality, None, device).decode(data, limits)
    installed = ", ".join(
        f"{header.codec} quality {q} weights {w.weights_hash.hex() if w else _NO_WEIGHTS.hex()}"
        for info in same
        for q, w in ((q, info.weights_of(q)) for q in info.qualities)
    )
    raise UnknownCodecError(
        f"this file needs codec {header.codec!r} quality {header.quality} weights "
        f"{header.weights_hash.hex()}, which is not installed ({f'installed: {installed}' if same else _installed()})"
    )
