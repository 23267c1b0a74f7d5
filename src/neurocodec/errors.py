"""Every user-facing failure of neurocodec is a :class:`NeurocodecError` with one clear line."""


class NeurocodecError(Exception):
    """Base class of every error neurocodec raises on bad input."""


class BitstreamError(NeurocodecError, ValueError):
    """A stream or file is corrupt, truncated, of an unknown version, or inconsistent."""


class TableMismatchError(BitstreamError):
    """A stream was written with other CDF tables than the ones given to decode it."""


class ContainerError(BitstreamError):
    """A file is not a valid neurocodec container: wrong magic, truncated, malformed or refused."""


class ChecksumError(ContainerError):
    """A file's CRC-32 does not match its bytes: it is corrupt, truncated or has extra bytes."""


class UnsupportedVersionError(ContainerError):
    """A file was written in a container format version this neurocodec cannot read."""


class LimitError(ContainerError):
    """A file asks for more than the decoder's resource limits allow (``container.Limits``)."""


class GeometryError(NeurocodecError, ValueError):
    """A media geometry (size, channels, rate, bit depth) is outside the container's limits."""


class UnsupportedMediaError(NeurocodecError):
    """A media file or tensor is of a kind neurocodec cannot read or write (format, mode, alpha)."""


class MediaReadError(NeurocodecError):
    """A media file could not be read: missing, unreadable, truncated or corrupt."""


class OutputError(NeurocodecError):
    """An output file could not be written; nothing was left behind."""


class OutputExistsError(OutputError):
    """An output file already exists and overwriting was not asked for."""


class WrongCodecError(NeurocodecError, ValueError):
    """A file was written by another codec, quality or weights than the codec asked to decode it."""


class UnknownCodecError(NeurocodecError, LookupError):
    """A codec or quality is not installed: no registered codec module, or no weights for it."""


class WeightsError(NeurocodecError):
    """A codec's weights file or model card is missing, altered or invalid."""


class DeviceError(NeurocodecError):
    """A device was asked for that this machine or this torch build does not have."""


class ConfigError(NeurocodecError, ValueError):
    """A training, encoding or evaluation setting that cannot work (unknown model, crop too small, ...)."""


class PacketLossWarning(UserWarning):
    """A file decoded with some of its packets missing: what they held was estimated."""
