"""One trainer per run directory: an exclusive lock file `model_dir/.lock`.

The file holds the holder's host and pid (JSON). A second trainer on the same
directory is refused naming the holder. A lock left by a process that is gone
(`kill -9`, a crash) is taken over when it was written on this host and its
pid no longer runs; one written on another host is refused with the fix
(remove the file once that host's trainer has stopped). Directories on object
stores (`gs://…`) are not locked: `tf.io.gfile` has no create-if-absent, so
a clear warning says so.
"""

import atexit
import json
import os
import socket

from absl import logging

from data_pipeline.atomic import pid_alive

LOCK_FILE = ".lock"


class RunLock:
    """Takes `model_dir/.lock` for this process; `release()` (also at exit) frees it.

    Args:
        model_dir: str. The run directory (created if missing). Required.

    Raises:
        ValueError: another live trainer holds the lock, or the directory
            cannot be written.
    """

    def __init__(self, model_dir: str):
        self.path = os.path.join(model_dir, LOCK_FILE)
        self.held = False
        if "://" in model_dir:
            logging.warning("No lock on %s: locking run directories on object stores is not "
                            "supported; make sure only one trainer uses it.", model_dir)
            return
        self._acquire()
        atexit.register(self.release)

    def _acquire(self):
        me = {"host": socket.gethostname(), "pid": os.getpid()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder == me:
                    return  # This process already holds it (a second Trainer in-process).
                if self._stale(holder, me["host"]):
                    logging.warning("Removing a stale lock %s of %s (no such process).",
                                    self.path, holder)
                    try:
                        os.remove(self.path)
                    except FileNotFoundError:
                        pass
                    continue
                raise ValueError(
                    f"{self.path}: another trainer is using this run directory "
                    f"(host {holder.get('host', '?')}, pid {holder.get('pid', '?')}). Wait for "
                    "it to finish or stop it; if it is no longer running, remove "
                    f"{self.path}.") from None
            except OSError as e:
                raise ValueError(f"model_dir {os.path.dirname(self.path)} is not writable "
                                 f"({e.strerror}): choose another --model_dir or fix its "
                                 "permissions.") from None
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(me) + "\n")
            self.held = True
            return
        raise ValueError(f"{self.path}: could not take the lock (another trainer is "
                         "starting?); try again.")

    def _holder(self) -> dict:
        try:
            with open(self.path, encoding="utf-8") as f:
                holder = json.loads(f.read() or "{}")
            return holder if isinstance(holder, dict) else {}
        except (OSError, ValueError):
            return {}

    @staticmethod
    def _stale(holder: dict, host: str) -> bool:
        pid = holder.get("pid")
        return (holder.get("host") == host and isinstance(pid, int)
                and not pid_alive(pid))

    def release(self):
        if self.held:
            self.held = False
            try:
                os.remove(self.path)
            except OSError:
                pass
