"""Outputs: one run owns an output at a time, and an output is replaced only by a complete one.

:func:`output_folder` (shard stages) and :func:`model_output` (fit-pca, fit-gmm, train-svm)
check that the output can be written before any work, take a lock naming the run that holds
it, and on failure remove a folder the run created but left without shards. The lock is an
advisory ``flock`` on a small file in the output's folder: the kernel releases it when its
process ends, kill -9 included, so a stale lock from a dead run is simply taken over. The file
stays (it records the last owner); another run that finds it locked is refused, naming the
holder. Under torchrun each rank locks its own share of a folder.

With ``overwrite`` nothing is deleted up front: each new shard replaces its old namesake as it
is committed (an atomic rename), and old shards the new run does not write are removed only
once the run has completed, so a run that fails keeps the old output.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from featx.errors import DiskFullError, OutputError, OutputExistsError, OutputLockedError
from featx.io.h5 import TMP_SUFFIX

SHARD_GLOB = "shard-*.h5"


def check_path(path: Path) -> None:
    """Refuse an output path the file system cannot hold (a name longer than its limit),
    before anything is made (Python's own checks would raise mid-way)."""
    limit = 255
    try:
        limit = os.pathconf(next((p for p in path.absolute().parents if p.exists()), Path("/")),
                            "PC_NAME_MAX")
    except (OSError, ValueError):
        pass
    long = [part for part in path.parts if len(os.fsencode(part)) > limit]
    if long:
        raise OutputError(f"cannot write {str(path)[:60]}...: a name in it is "
                          f"{len(os.fsencode(long[0]))} bytes long, more than the {limit} this "
                          "file system takes")


def free_bytes(folder: Path) -> int:
    return shutil.disk_usage(folder).free


def require_space(folder: Path, needed: int, kept: int) -> None:
    """Refuse to start a file of ``needed`` bytes where less is free (a full disk would make
    HDF5 fail mid-write)."""
    free = free_bytes(folder)
    if free < needed:
        raise DiskFullError(f"not enough disk space in {folder}: the next file needs about "
                            f"{needed / 2**20:.1f} MiB, {free / 2**20:.1f} MiB are free; the "
                            f"{kept} complete file(s) there are kept, rerun to resume once "
                            "space is freed")


@contextmanager
def _lock(path: Path, command: str) -> Iterator[None]:
    try:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    except OSError as exc:
        raise OutputError(f"cannot write in {path.parent}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _owner(fd)
            raise OutputLockedError(
                f"{path.parent} is being written by another featx run (pid {owner.get('pid', '?')}"
                f" on {owner.get('host', '?')}: {owner.get('command', '?')}); wait for it to "
                "finish, or use another -o") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                  "started": time.time(), "command": command}).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _owner(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}


def _prepare(folder: Path) -> bool:
    """Create ``folder`` (and its parents) if needed; True if this call created it."""
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"cannot write into {folder}: it is a file, not a folder")
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {folder}: {exc.strerror}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {folder} is not writable")
    return created


class OutputFolder:
    """A shard folder held by this run; ``written`` collects the shards it committed."""

    def __init__(self, path: Path):
        self.path = path
        self.written: set[str] = set()

    def shards(self) -> list[Path]:
        return sorted(self.path.glob(SHARD_GLOB))

    def keep(self, path: Path) -> Path:
        self.written.add(path.name)
        return path

    def require_space(self, needed: int) -> None:
        require_space(self.path, needed, len(self.shards()))


@contextmanager
def output_folder(out: str | Path, *, overwrite: bool, command: str = "", rank: int = 0,
                  world: int = 1, owned=lambda name: True) -> Iterator[OutputFolder]:
    """Hold ``out`` for this run (see the module doc). ``owned(name)`` says which shard names
    are this rank's, for the removal of stale shards after an ``overwrite``."""
    out = Path(out)
    check_path(out)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"output {out} exists and is not a folder")
    created = _prepare(out)
    lock = out / (".featx.lock" if world == 1 else f".featx-rank{rank}.lock")
    try:
        with _lock(lock, command):
            for tmp in out.glob(SHARD_GLOB + TMP_SUFFIX):
                if owned(tmp.name.removesuffix(TMP_SUFFIX)):
                    tmp.unlink()  # an interrupted run's: never complete
            folder = OutputFolder(out)
            yield folder
            if overwrite:
                for old in folder.shards():
                    if old.name not in folder.written and owned(old.name):
                        old.unlink()
    except OutputLockedError:
        raise  # the folder is the other run's now, even if this call created it: leave it
    except BaseException:
        if created and not any(out.glob(SHARD_GLOB)):
            shutil.rmtree(out, ignore_errors=True)
        raise


@contextmanager
def model_output(path: str | Path, *, overwrite: bool, command: str = "") -> Iterator[Path]:
    """Hold the model file ``path`` for this run: refused if it exists (without ``overwrite``)
    or is a folder, its folder created and checked writable before any work."""
    path = Path(path)
    check_path(path)
    if path.is_dir():
        raise OutputExistsError(f"{path} is a folder; name a file for the model")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass --overwrite to replace it")
    _prepare(path.parent)
    with _lock(path.with_name(f".{path.name}.lock"), command):
        yield path


def save_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically (a complete file or none), held by the
    caller through :func:`model_output`."""
    path = Path(path)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror}") from None
    return path
