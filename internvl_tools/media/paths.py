"""Local paths, confined: the package's one path check (:func:`confine_path`), race-free opening
(:func:`open_confined`) and the policy's view of a path (:func:`resolve_local_path`).

Used by images and videos, by document sources and by the integrations' file tools. Every problem a path can have
comes back as a typed :class:`~internvl_tools.errors.MediaError` that names the fix.

>>> confine_path("scans/a.png", ["/srv/uploads"], relative=True, must_exist=False).as_posix()
'/srv/uploads/scans/a.png'
"""

from __future__ import annotations

import errno
import io
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path, PureWindowsPath
from typing import Any

from internvl_tools.errors import (
    ConfigError,
    MediaNotFoundError,
    MediaPolicyError,
    PathNotAllowedError,
    UnsupportedSourceError,
)
from internvl_tools.media.policy import MAX_PATH_CHARS, MediaPolicy, shorten

__all__ = ["confine_path", "open_confined", "resolve_local_path"]


def resolve_local_path(raw: str, policy: MediaPolicy) -> Path:
    """``raw`` as a path the policy lets us read: resolved (symlinks followed) and inside ``allowed_dirs``.

    A thin policy wrapper around :func:`confine_path` (``must_exist=False``: whether the file is there is checked
    when it is opened). Relative paths are taken from the first allowed directory that has them (else the first);
    raises :class:`PathNotAllowedError` when local files are off or the path resolves outside, and
    :class:`MediaNotFoundError` for a path that cannot name a file (symlink loop, NUL byte, bad encoding). Shared
    by images and videos.

    >>> resolve_local_path("a.png", MediaPolicy.sandboxed(["/srv/uploads"])).as_posix()
    '/srv/uploads/a.png'
    """
    if not policy.allow_local_files:
        raise PathNotAllowedError(
            f"Reading local files is disabled by the media policy (path {shorten(_path_text(raw))!r}); pass the "
            "image as bytes or enable MediaPolicy(allow_local_files=True)."
        )
    return confine_path(raw, policy.allowed_dirs, must_exist=False)


#: Longest single file-name component most file systems take (bytes); longer names fail with ENAMETOOLONG.
_NAME_MAX = 255


def confine_path(
    raw: str | bytes | os.PathLike[Any],
    allowed_dirs: Iterable[str | os.PathLike[str]] | str | os.PathLike[str] | None = None,
    *,
    relative: bool = False,
    must_exist: bool = True,
    max_bytes: int | None = None,
) -> Path:
    """The package's one path check: ``raw`` as a readable path inside ``allowed_dirs``, or a typed error.

    Every problem a path can have comes back as a :class:`~internvl_tools.errors.MediaError` whose message names
    the problem and the fix, never as a bare ``OSError``/``ValueError``/``RuntimeError``:

    * :class:`MediaNotFoundError`: empty, NUL byte, not encodable as a file name, too long, ``~user`` with no such
      user, symlink loop, missing, permission denied, a directory, FIFO, device or socket instead of a regular
      file (a FIFO or ``/dev/zero`` would block or never end, so they are refused before anything opens them).
    * :class:`PathNotAllowedError`: resolves (symlinks followed, ``..`` folded) outside ``allowed_dirs``; with
      ``relative=True`` also absolute paths (POSIX or Windows style), ``~`` and any ``..`` component.
    * :class:`MediaPolicyError`: bigger than ``max_bytes``.

    Args:
        raw: the path as ``str``, ``bytes`` (non-UTF-8 names are kept as the OS gives them) or ``os.PathLike``.
        allowed_dirs: directories the path must resolve into; ``None`` confines nothing (the other checks apply).
            A relative path is taken from the first of them that has it (else the first); without dirs, from the
            working directory.
        relative: the path comes from an untrusted caller (an agent's tool call): refuse absolute paths, ``~``
            and ``..`` outright instead of resolving them.
        must_exist: also require an existing, readable-looking regular file (``stat``, no open). With ``False``
            only the name and the confinement are checked (for callers that open later).
        max_bytes: refuse regular files larger than this.

    Returns the resolved path when ``allowed_dirs`` is given, else the ``~``-expanded path as given. To close the
    check-then-open race as well, open with :func:`open_confined`.

    >>> confine_path("a.png", ["/srv/uploads"], must_exist=False).as_posix()
    '/srv/uploads/a.png'
    >>> confine_path("../etc/passwd", ["/srv/uploads"], relative=True)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    internvl_tools.errors.PathNotAllowedError: Paths may not contain '..' ('../etc/passwd'); give a path inside...
    """
    text = _path_text(raw)
    shown = shorten(text)
    if not text.strip():
        raise MediaNotFoundError("The path is empty; pass the name of a file.")
    if "\x00" in text:
        raise MediaNotFoundError(
            f"Path {shown!r} contains a NUL byte, which no file name can hold; pass the path without it (it was "
            "probably cut out of binary data)."
        )
    try:
        encoded = os.fsencode(text)
    except UnicodeError as err:
        raise MediaNotFoundError(
            f"Path {shown!r} has characters that cannot be part of a file name on this system ({err.reason}); pass "
            "the name as bytes, or fix its encoding."
        ) from err
    too_long = len(encoded) > MAX_PATH_CHARS or (
        must_exist and any(len(part) > _NAME_MAX for part in re.split(rb"[/\\]", encoded))
    )
    if too_long:
        raise MediaNotFoundError(
            f"Path {shown!r} is too long ({len(encoded):,} bytes; file systems take at most {_NAME_MAX} bytes per "
            f"name and {MAX_PATH_CHARS} in all); shorten the name or move the file."
        )
    if relative:
        _refuse_non_relative(text, shown)
    path = Path(text)
    if not relative:
        try:
            path = path.expanduser()
        except RuntimeError as err:  # '~nosuchuser/...'
            raise MediaNotFoundError(f"Cannot expand '~' in {shown!r} ({err}); write the path out in full.") from err
    dirs = _confinement_dirs(allowed_dirs)
    if dirs is not None:
        if not path.is_absolute():
            candidates = [d / path for d in dirs]
            path = next((c for c in candidates if _lexists(c)), candidates[0])
        try:
            resolved = path.resolve()  # follows symlinks and folds '..', so escapes show up here
        except (OSError, RuntimeError, ValueError) as err:
            raise MediaNotFoundError(f"Cannot read {shown!r}: {_path_problem(err)}.") from err
        if not any(resolved.is_relative_to(d) for d in dirs):
            if relative:  # an agent learns neither the link's target nor our directory layout
                raise PathNotAllowedError(f"{shown!r} resolves outside the allowed folder; it cannot be read.")
            allowed = ", ".join(str(d) for d in dirs)
            raise PathNotAllowedError(
                f"Path {shown!r} resolves to {str(resolved)!r}, outside the allowed directories ({allowed}). Copy "
                "the file into an allowed directory or widen the allowed directories (MediaPolicy.allowed_dirs)."
            )
        path = resolved
    if must_exist:
        try:
            info = os.stat(path)
        except (OSError, ValueError) as err:
            if getattr(err, "errno", None) == errno.ENOENT:
                where = "relative to the allowed folder" if relative else "check the name and the working directory"
                raise MediaNotFoundError(f"No such file: {shown!r} ({where}){_windows_hint(text)}.") from err
            raise MediaNotFoundError(f"Cannot read {shown!r}: {_path_problem(err)}.") from err
        _check_regular(info, shown, max_bytes)
    return path


def open_confined(
    raw: str | bytes | os.PathLike[Any],
    allowed_dirs: Iterable[str | os.PathLike[str]] | str | os.PathLike[str] | None = None,
    *,
    relative: bool = False,
    max_bytes: int | None = None,
) -> io.BufferedReader:
    """Check ``raw`` with :func:`confine_path`, open it, and check the *opened* file again (no check-then-open race).

    The file is opened non-blocking (a FIFO swapped in after the check cannot hang the open), then ``fstat`` must
    show the same regular file that was checked, and where the OS tells (Linux), the opened file's real path must
    still lie inside ``allowed_dirs``. Raises the same typed errors as :func:`confine_path`. The caller closes it.
    """
    path = confine_path(raw, allowed_dirs, relative=relative, must_exist=True, max_bytes=max_bytes)
    shown = shorten(_path_text(raw))
    flags = os.O_RDONLY
    for name in ("O_BINARY", "O_NONBLOCK", "O_NOCTTY", "O_CLOEXEC"):
        flags |= getattr(os, name, 0)
    try:
        checked = os.stat(path)
        fd = os.open(path, flags)
    except (OSError, ValueError) as err:
        raise MediaNotFoundError(f"Cannot open {shown!r}: {_path_problem(err)}.") from err
    try:
        info = os.fstat(fd)
        _check_regular(info, shown, max_bytes)
        swapped = (info.st_dev, info.st_ino) != (checked.st_dev, checked.st_ino)
        dirs = _confinement_dirs(allowed_dirs)
        real = _fd_real_path(fd)
        if swapped or (dirs is not None and real is not None and not any(real.is_relative_to(d) for d in dirs)):
            raise PathNotAllowedError(
                f"{shown!r} changed while it was being opened (a file or link was swapped in); it was not read. "
                "Try again, and keep untrusted writers out of the allowed directories."
            )
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    handle.raw.name = os.fspath(path)  # so messages name the file, not a descriptor number
    return handle


def _path_text(raw: Any) -> str:
    if isinstance(raw, os.PathLike):
        raw = os.fspath(raw)
    if isinstance(raw, (bytes, bytearray)):
        return os.fsdecode(bytes(raw))  # undecodable bytes become surrogate escapes and round-trip to the OS
    if not isinstance(raw, str):
        raise UnsupportedSourceError(f"A path must be str, bytes or os.PathLike, got {type(raw).__name__}.")
    return raw


def _refuse_non_relative(text: str, shown: str) -> None:
    windows = PureWindowsPath(text)
    if text.startswith(("~", "/", "\\")) or windows.drive or windows.root:
        raise PathNotAllowedError(
            f"Absolute paths are not accepted ({shown!r}, also '~' and drive letters); give a path relative to the "
            "allowed folder, e.g. 'scans/receipt.png'."
        )
    if ".." in re.split(r"[/\\]", text):
        raise PathNotAllowedError(f"Paths may not contain '..' ({shown!r}); give a path inside the allowed folder.")


def _confinement_dirs(allowed_dirs: Any) -> tuple[Path, ...] | None:
    if allowed_dirs is None:
        return None
    items = (allowed_dirs,) if isinstance(allowed_dirs, (str, bytes, os.PathLike)) else tuple(allowed_dirs)
    if not items:
        raise ConfigError("allowed_dirs is empty; pass None to allow any path, or some directories.")
    dirs = []
    for item in items:
        try:
            dirs.append(Path(os.fsdecode(item)).expanduser().resolve())
        except (OSError, RuntimeError, ValueError) as err:
            raise ConfigError(f"Allowed directory {item!r} cannot be resolved ({err}); fix the setting.") from err
    return tuple(dirs)


def _lexists(path: Path) -> bool:
    try:
        return os.path.lexists(path)
    except (OSError, ValueError):
        return False


def _path_problem(err: BaseException) -> str:
    """What an OS error about a path means, and what to do about it."""
    code = getattr(err, "errno", None)
    if isinstance(err, RuntimeError) or code == errno.ELOOP:
        return "it runs into a symlink loop; fix or remove the link"
    if code == errno.ENAMETOOLONG:
        return "the name is too long for the file system; shorten it"
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied; make the file readable by this process"
    if code == errno.ENOENT:
        return "no such file; check the name"
    if code == errno.ENOTDIR:
        return "a part of the path is a file, not a directory; check the path"
    if isinstance(err, ValueError):
        return f"it is not a valid path ({err}); check the name"
    return f"{getattr(err, 'strerror', None) or err}; check the path"


def _windows_hint(text: str) -> str:
    if os.name != "nt" and (PureWindowsPath(text).drive or "\\" in text):
        return "; it looks like a Windows path, but this system separates folders with '/'"
    return ""


def _check_regular(info: os.stat_result, shown: str, max_bytes: int | None) -> None:
    mode = info.st_mode
    if stat.S_ISREG(mode):
        if max_bytes is not None and info.st_size > max_bytes:
            raise MediaPolicyError(
                f"{shown!r} is {info.st_size:,} bytes, over the {max_bytes:,}-byte limit; pass a smaller file or "
                "raise the limit."
            )
        return
    if stat.S_ISDIR(mode):
        kind = "a directory; name a file inside it"
    elif stat.S_ISFIFO(mode):
        kind = "a named pipe (FIFO), which could block forever; pass a regular file"
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        kind = "a device file (reading it may never end); pass a regular file"
    elif stat.S_ISSOCK(mode):
        kind = "a socket; pass a regular file"
    else:
        kind = "not a regular file; pass a regular file"
    raise MediaNotFoundError(f"{shown!r} is {kind}.")


def _fd_real_path(fd: int) -> Path | None:
    """Where an open descriptor really points (Linux ``/proc``), or ``None`` where the OS does not say."""
    try:
        return Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        return None
