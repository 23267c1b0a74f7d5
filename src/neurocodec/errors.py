"""Every user-facing failure of neurocodec is a :class:`NeurocodecError` with one clear line."""


class NeurocodecError(Exception):
    """Base class of every error neurocodec raises on bad input."""


class BitstreamError(NeurocodecError, ValueError):
    """A stream or file is corrupt, truncated, of an unknown version, or inconsistent."""


class TableMismatchError(BitstreamError):
    """A stream was written with other CDF tables than the ones given to decode it."""
