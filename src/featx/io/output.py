"""Outputs: one run owns an output at a time, and an output is replaced only by a complete one.

:func:`output_folder` (shard stages) and :func:`model_output` (fit-pca, fit-gmm, train-svm)
check that the output can be written before any work, take a lock naming the run that holds
it, and on failure remove a folder the run created but left without shards. The lock is an
advisory ``flock`` on a small file in the output's folder: the kernel releases it when its
process ends, kill -9 included, so a stale lock from a dead run is simply taken over. The file
stays (it records the last owner); another run that finds it locked is refused, naming the
holder. Under torchrun rank 0 holds the folder for every rank (:func:`output_folder`).

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
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from featx.errors import DiskFullError, OutputError, OutputExistsError, OutputLockedError
from featx.io.h5 import SHARD_GLOB, TMP_SUFFIX, file_size_limit
from featx.io.shard import read_header



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
    limit = file_size_limit()
    if limit is not None and needed > limit:
        raise DiskFullError(f"the next file in {folder} needs about {needed / 2**20:.1f} MiB, "
                            f"more than this process's file-size limit (ulimit -f) of "
                            f"{limit / 2**20:.1f} MiB; raise the limit (or pass a smaller "
                            f"--shard-size) and rerun: the {kept} complete file(s) there are "
                            "kept")
    free = free_bytes(folder)
    if free < needed:
        raise DiskFullError(f"not enough disk space in {folder}: the next file needs about "
                            f"{needed / 2**20:.1f} MiB, {free / 2**20:.1f} MiB are free; the "
                            f"{kept} complete file(s) there are kept, rerun to resume once "
                            "space is freed")


@contextmanager
def _lock(path: Path, command: str) -> Iterator[None]:
    # not filelock.FileLock (the same flock): ours writes the holder's pid, host and command
    # into the lock file, so that a refused run is told who holds the output
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


def prepare_folder(folder: Path) -> bool:
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
def output_folder(out: str | Path, *, overwrite: bool, command: str = "", group: Any = None
                  ) -> Iterator[OutputFolder]:
    """Hold ``out`` for this run (see the module doc). ``group`` (a :class:`featx.dist.Group`)
    spans the run's processes under torchrun: rank 0 holds the folder (creates it, locks it,
    clears what an interrupted run left) before the others write into it; at the end, once
    every rank has finished, rank 0 checks each shard the ranks wrote is complete and, with
    ``overwrite``, removes the old shards no rank wrote."""
    out = Path(out)
    leader = group is None or group.leader
    lead = group.lead if group is not None else (lambda fn: fn())
    created = False
    with ExitStack() as stack:
        def hold() -> bool:
            check_path(out)
            if out.exists() and not out.is_dir():
                raise OutputExistsError(f"output {out} exists and is not a folder")
            made = prepare_folder(out)
            try:
                stack.enter_context(_lock(out / ".featx.lock", command))
            except OutputLockedError:
                raise  # the folder is the other run's now, even if this call created it
            except BaseException:
                if made and not any(out.glob(SHARD_GLOB)):
                    shutil.rmtree(out, ignore_errors=True)
                raise
            for tmp in out.glob(SHARD_GLOB + TMP_SUFFIX):
                tmp.unlink()  # an interrupted run's: never complete
            return made

        created = bool(lead(hold))
        folder = OutputFolder(out)
        try:
            yield folder
            every = group.objects(sorted(folder.written)) if group is not None else \
                [sorted(folder.written)]
            if leader:
                names = set().union(*every)
                if group is not None and group.world > 1:
                    _verify(out, names)
                if overwrite:
                    for old in folder.shards():
                        if old.name not in names:
                            old.unlink()
        except BaseException:
            if leader and created and not any(out.glob(SHARD_GLOB)):
                shutil.rmtree(out, ignore_errors=True)
            raise


def _verify(out: Path, names: set[str]) -> None:
    """Every shard the ranks say they wrote is there and complete (a shared file system that
    lost one, a rank that wrote elsewhere: refused, not reported as success)."""
    for name in sorted(names):
        path = out / name
        if not path.is_file():
            raise OutputError(f"{path} was written by a rank but is not in {out}: do all ranks "
                              "see the same file system? Rerun to resume")
        read_header(path)  # raises on an incomplete or unreadable shard


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
    prepare_folder(path.parent)
    with _lock(path.with_name(f".{path.name}.lock"), command):
        yield path


def save_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically (a complete file or none), held by the
    caller through :func:`model_output`."""
    return save_text(path, json.dumps(obj, indent=2) + "\n")


def save_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically: a complete file or none."""
    path = Path(path)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror}") from None
    return path


def save_csv(path: str | Path, header: list[str], rows: list[list]) -> Path:
    """Write a CSV (a header, then ``rows``) to ``path`` atomically, as :func:`save_json`."""
    import csv

    path = Path(path)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror}") from None
    return path
