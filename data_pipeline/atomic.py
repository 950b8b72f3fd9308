"""Atomic file output: write to a temporary path, then rename into place.

Local paths use `os` (renames are atomic). URLs such as `gs://bucket/dir` go
through `tf.io.gfile`: an object store has no atomic directory rename, so a
directory is published file by file with a marker file (the manifest) copied
last and removed first, and a reader that waits for the marker never sees a
half-written split.
"""

import contextlib
import os
import shutil
import tempfile
import uuid
from typing import Iterator


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
            must exist.

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
        path: str. Destination file.
        text: str. Content.
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


def make_temp_dir(parent: str, prefix: str) -> str:
    """Creates a new, uniquely named directory inside `parent` (local or URL).

    Args:
        parent: str. An existing directory or `gs://` prefix.
        prefix: str. Start of the new directory's name.
    """
    if not is_remote(parent):
        return tempfile.mkdtemp(prefix=prefix, dir=parent)
    path = os.path.join(parent, prefix + uuid.uuid4().hex)
    _gfile().makedirs(path)
    return path


def remove_tree(path: str) -> None:
    """Removes a directory tree if it exists; never raises."""
    if not is_remote(path):
        shutil.rmtree(path, ignore_errors=True)
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
        src: str. A complete directory of files (no subdirectories).
        dst: str. Final directory.
        backup: str. Where a local `dst` is moved aside (inside the temp dir).
        marker: str. File name that readers rely on (e.g. manifest.json).
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
