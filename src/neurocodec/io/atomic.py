"""Atomic file output: a file appears complete or not at all, and never replaces one by accident."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path

from neurocodec.errors import OutputError, OutputExistsError


def _create_temp(directory: Path, name: str) -> tuple[int, Path]:
    """A new, empty, hidden temporary file beside the target (mode 0o666 less the umask)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        temp = directory / f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(temp, flags, 0o666), temp
        except FileExistsError:
            continue


def _link_no_clobber(temp: Path, path: Path) -> None:
    """Give ``temp`` the name ``path`` unless ``path`` exists, atomically where links exist."""
    try:
        os.link(temp, path)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: check, then rename
        if os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path)) from None
        os.replace(temp, path)
    else:
        os.unlink(temp)


def _sync_directory(directory: Path) -> None:
    """Make the new directory entry durable (POSIX; a no-op where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path: str | os.PathLike[str], data: bytes, *, overwrite: bool = False) -> None:
    """Write ``data`` to ``path`` atomically.

    The bytes go to a temporary file in the same directory, are flushed to disk, and the file
    is then moved into place, so ``path`` never holds a partial file. An existing ``path`` is
    replaced only when ``overwrite`` is true (else :class:`OutputExistsError`). Any failure
    removes the temporary file, leaves ``path`` as it was, and raises :class:`OutputError`.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a directory")
    if not overwrite and os.path.lexists(path):
        raise OutputExistsError(f"{path} already exists (use -f / overwrite=True to replace it)")
    directory = path.parent
    if not directory.is_dir():
        raise OutputError(f"cannot write {path}: no such directory {directory}")
    try:
        fd, temp = _create_temp(directory, path.name)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(temp, path)
        else:
            _link_no_clobber(temp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        if isinstance(e, FileExistsError):
            raise OutputExistsError(
                f"{path} already exists (use -f / overwrite=True to replace it)"
            ) from None
        if isinstance(e, OSError):
            raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
        raise
    _sync_directory(directory)
