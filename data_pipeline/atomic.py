"""Atomic file output: write to a temporary path, then rename into place.

Local paths use `os` (renames are atomic). URLs such as `gs://bucket/dir` go
through `tf.io.gfile`: an object store has no atomic directory rename, so a
directory is published file by file with a marker file (the manifest) copied
last and removed first, and a reader that waits for the marker never sees a
half-written split.
"""

import contextlib
import os
import re
import shutil
import socket
import tempfile
import time
import uuid
from typing import Iterator

from absl import logging

# Temporary directories of a build: `.tmp-HOST-PID-XXXXXXXX`, so a later build
# can tell its own stale ones (same host, process gone) from a live build's.
_OWNED_TMP = re.compile(r"^(?P<prefix>.*)-(?P<host>[^-/]+)-(?P<pid>\d+)-[^-]+$")
# A temporary directory of an older naming (no host and pid) is stale once
# it is this old.
STALE_SECONDS = 24 * 3600


def is_remote(path: str) -> bool:
    """True for URLs (`gs://…`, `ram://…`), which go through `tf.io.gfile`."""
    return "://" in path


def _gfile():
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    return tf.io.gfile


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yields a temporary path beside `path`; renames it to `path` on success.

    On an exception the temporary file is removed, so a reader never sees a
    half-written `path`.

    Args:
        path: str. The final file path (or a `gs://` URL). Its directory
            must exist. Required.

    Yields:
        A temporary file path in the same directory (same file system, so the
        final `os.replace` is atomic). For a URL, a local temporary file
        that is copied to `path` on success (an object appears whole).
    """
    if is_remote(path):
        with _remote_atomic_path(path) as tmp:
            yield tmp
        return
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(
        prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; use normal perms.
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_text(path: str, text: str) -> None:
    """Writes `text` to `path` as UTF-8, atomically.

    Args:
        path: str. Destination file. Required.
        text: str. Content. Required.
    """
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


@contextlib.contextmanager
def _remote_atomic_path(path: str) -> Iterator[str]:
    fd, tmp = tempfile.mkstemp(suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        _gfile().copy(tmp, path, overwrite=True)
    finally:
        os.remove(tmp)


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "host"


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs on this host (under any user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def make_temp_dir(parent: str, prefix: str) -> str:
    """Creates a new, uniquely named directory inside `parent` (local or URL).

    Local names carry this host and process id (`PREFIX-HOST-PID-XXXXXXXX`),
    so `remove_stale_temp_dirs` can tell a dead build's directory from a
    live one's.

    Args:
        parent: str. An existing directory or `gs://` prefix. Required.
        prefix: str. Start of the new directory's name (e.g. `.tmp`). Required.
    """
    if not is_remote(parent):
        return tempfile.mkdtemp(prefix=f"{prefix.rstrip('-')}-{_host()}-{os.getpid()}-",
                                dir=parent)
    path = os.path.join(parent, f"{prefix.rstrip('-')}-{uuid.uuid4().hex}")
    _gfile().makedirs(path)
    return path


def remove_stale_temp_dirs(parent: str, prefix: str) -> list[str]:
    """Removes temporary directories a killed build left in `parent`.

    A local `PREFIX-HOST-PID-*` directory is stale when HOST is this host and
    process PID is gone; one of another name starting with PREFIX when it is
    older than `STALE_SECONDS`. Directories of live builds, or of builds on
    other hosts sharing the file system, are kept. URLs are left alone.

    Args:
        parent: str. The output directory. Required.
        prefix: str. As passed to `make_temp_dir` (e.g. `.tmp`). Required.

    Returns:
        The paths removed.
    """
    if is_remote(parent) or not os.path.isdir(parent):
        return []
    removed = []
    host, now = _host(), time.time()
    for name in sorted(os.listdir(parent)):
        path = os.path.join(parent, name)
        if not name.startswith(prefix.rstrip("-") + "-") or not os.path.isdir(path):
            continue
        match = _OWNED_TMP.match(name)
        if match and match.group("prefix") == prefix.rstrip("-"):
            stale = match.group("host") == host and not pid_alive(int(match.group("pid")))
        else:
            try:
                stale = now - os.path.getmtime(path) > STALE_SECONDS
            except OSError:
                continue
        if stale:
            remove_tree(path)
            if not os.path.exists(path):
                removed.append(path)
                logging.warning("Removed %s, left by a build that was killed.", path)
    return removed


def remove_tree(path: str) -> None:
    """Removes a directory tree if it exists; never raises (a full disk or a
    vanished file during cleanup must not hide the error being handled)."""
    if not is_remote(path):
        try:
            shutil.rmtree(path, ignore_errors=True)
        except Exception:  # pylint: disable=broad-except
            pass
        return
    try:
        if _gfile().exists(path):
            _gfile().rmtree(path)
    except Exception:  # pylint: disable=broad-except
        pass  # Best effort: cleanup must not hide the error being handled.


def publish_dir(src: str, dst: str, backup: str, marker: str) -> None:
    """Moves the flat directory `src` to `dst`, replacing an existing `dst`.

    Local: `dst` is renamed to `backup`, then `src` to `dst` (each rename is
    atomic; the caller removes `backup`). URL: the old `dst/marker` is removed
    first, then the old `dst`; the files of `src` are copied with `marker`
    last, and `src` is removed, so `dst/marker` exists only beside a complete
    set of files.

    Args:
        src: str. A complete directory of files (no subdirectories). Required.
        dst: str. Final directory. Required.
        backup: str. Where a local `dst` is moved aside (inside the temp dir). Required.
        marker: str. File name that readers rely on (e.g. manifest.json). Required.
    """
    if not is_remote(dst):
        if os.path.exists(dst):
            os.rename(dst, backup)
        os.rename(src, dst)
        return
    gfile = _gfile()
    if gfile.exists(os.path.join(dst, marker)):
        gfile.remove(os.path.join(dst, marker))
    if gfile.exists(dst):
        gfile.rmtree(dst)
    gfile.makedirs(dst)
    names = sorted((n.rstrip("/") for n in gfile.listdir(src)), key=lambda n: (n == marker, n))
    for name in names:
        gfile.copy(os.path.join(src, name), os.path.join(dst, name), overwrite=True)
    gfile.rmtree(src)
