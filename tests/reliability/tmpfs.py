"""A small tmpfs for the full-disk and read-only cases (root only)."""

import contextlib
import os
import subprocess

import pytest


@contextlib.contextmanager
def small_tmpfs(path, size):
    """Mounts a tmpfs of `size` (bytes or "64k") at `path` for the block, then
    unmounts it (lazily if still busy). Skips, saying why, when not root or
    when mounting fails."""
    if os.geteuid() != 0:
        pytest.skip("a full or read-only disk is injected with a small tmpfs, which needs "
                    f"root (running as uid {os.geteuid()})")
    os.makedirs(path)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                             str(path)], capture_output=True, text=True)
    if result.returncode:
        pytest.skip(f"needs a small tmpfs; mount failed: {result.stderr.strip()}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], check=False).returncode:
            subprocess.run(["umount", "-l", str(path)], check=False)  # busy: detach it
