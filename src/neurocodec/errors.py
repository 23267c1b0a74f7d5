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
