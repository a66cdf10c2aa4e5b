"""The processes a run spans: one, or a torch.distributed process group under ``torchrun``.

A stage's maths sees a :class:`Group` and calls its collectives; with one process (the
default, :data:`SINGLE`) each is the identity, so the single-process and the distributed run
are one code path. Under ``torchrun`` (or ``srun`` with the same variables: RANK, WORLD_SIZE,
MASTER_ADDR, MASTER_PORT) the stage driver joins the process group (:func:`joined`) --
gloo for CPU tensors, NCCL for CUDA ones -- and leaves it when the stage ends.

Collectives move CPU tensors (float64 statistics, float32 rows): the sums are small beside the
work between them, and one backend then serves every device. Failures are one line: a rank
that died (its sockets close: gloo notices at once), a rank that hangs (no answer within
``FEATX_DIST_TIMEOUT`` seconds, default 1800), a rank started with other settings (refused by
name before any work, :meth:`Group.check_same`).
"""

from __future__ import annotations

import datetime
import pickle
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
import torch

from featx import environment, errors
from featx.errors import DistributedError, FeatxError

T = TypeVar("T")

TIMEOUT_ENV = "FEATX_DIST_TIMEOUT"
TRACE_ENV = "FEATX_DIST_TRACE"  # a file: each rank appends a JSON line per stage it ran


class Group:
    """One process (world size 1): every collective returns its input. ``sent`` counts the
    bytes this process put into collectives (the benchmarks report it)."""

    rank, world = 0, 1

    def __init__(self) -> None:
        self.sent = 0

    @property
    def leader(self) -> bool:
        """Rank 0: owns the output (the lock, the provenance, the model file)."""
        return self.rank == 0

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """All-reduce: ``t`` summed over the ranks (a new CPU tensor on every rank)."""
        return t

    def broadcast(self, t: torch.Tensor, src: int = 0) -> torch.Tensor:
        """Rank ``src``'s ``t`` on every rank (same shape and dtype everywhere)."""
        return t

    def objects(self, obj: T) -> list[T]:
        """Every rank's ``obj`` (picklable), in rank order."""
        return [obj]

    def share(self, obj: T, src: int = 0) -> T:
        """Rank ``src``'s ``obj`` on every rank."""
        return obj

    def barrier(self) -> None:
        """Wait until every rank is here."""

    def lead(self, fn: Callable[[], T]) -> T | None:
        """``fn()`` on rank 0 (the others get None); a featx error it raises is raised on
        every rank, so all stop alike (holding the output, say)."""
        return fn()

    def check_same(self, what: Mapping[str, Any]) -> None:
        """Refuse to go on unless every rank has the same ``what`` (version, stage, settings),
        naming the first setting that differs."""


SINGLE = Group()


class TorchGroup(Group):
    """The default torch.distributed process group (already initialised)."""

    def __init__(self) -> None:
        super().__init__()
        import torch.distributed as dist

        self._dist = dist
        self.rank, self.world = dist.get_rank(), dist.get_world_size()

    @contextmanager
    def _calling(self, what: str) -> Iterator[None]:
        try:
            yield
        except FeatxError:
            raise
        except (RuntimeError, ValueError) as exc:  # DistBackendError, DistNetworkError, ...
            raise DistributedError(self._explain(what, exc)) from None

    def _explain(self, what: str, exc: BaseException) -> str:
        first = re.sub(r"^\[[^\]]*\]\s*", "", str(exc).strip().splitlines()[0] if str(exc) else
                       type(exc).__name__)
        first = first.split(". This is typically")[0]
        where = f"rank {self.rank} of {self.world}"
        if "timed out" in first.lower() or "timeout" in first.lower():
            return (f"{where}: no answer from the other ranks in {timeout_seconds():g} s during "
                    f"{what} ({first}); one of them hangs or is far behind (raise "
                    f"{TIMEOUT_ENV} if that is expected)")
        return (f"{where}: another rank stopped during {what} ({first}); its own error says "
                "why; rerun the same command to resume")

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        out = t.detach().to("cpu", copy=True).contiguous()
        self.sent += out.numel() * out.element_size()
        with self._calling("an all-reduce"):
            self._dist.all_reduce(out)
        return out

    def broadcast(self, t: torch.Tensor, src: int = 0) -> torch.Tensor:
        out = t.detach().to("cpu", copy=True).contiguous()
        if self.rank == src:
            self.sent += out.numel() * out.element_size()
        with self._calling("a broadcast"):
            self._dist.broadcast(out, src)
        return out

    def objects(self, obj: T) -> list[T]:
        out: list[Any] = [None] * self.world
        self.sent += len(pickle.dumps(obj))
        with self._calling("an all-gather"):
            self._dist.all_gather_object(out, obj)
        return out

    def share(self, obj: T, src: int = 0) -> T:
        box = [obj if self.rank == src else None]
        if self.rank == src:
            self.sent += len(pickle.dumps(obj))
        with self._calling("a broadcast"):
            self._dist.broadcast_object_list(box, src)
        return box[0]

    def barrier(self) -> None:
        with self._calling("a barrier"):
            self._dist.barrier()

    def lead(self, fn: Callable[[], T]) -> T | None:
        result, failure = None, None
        if self.leader:
            try:
                result = fn()
            except FeatxError as exc:
                failure = exc
        said = self.share(None if failure is None else (type(failure).__name__, str(failure)))
        if failure is not None:
            raise failure
        if said is not None:
            kind = getattr(errors, said[0], FeatxError)
            raise (kind if isinstance(kind, type) and issubclass(kind, FeatxError)
                   else FeatxError)(said[1])
        return result

    def check_same(self, what: Mapping[str, Any]) -> None:
        every = self.objects(dict(what))
        for rank, theirs in enumerate(every):
            for key in every[0].keys() | theirs.keys():
                if theirs.get(key) != every[0].get(key):
                    raise DistributedError(
                        f"rank {rank} runs with {key}={theirs.get(key)!r}, rank 0 with "
                        f"{key}={every[0].get(key)!r}: every rank must run the same featx with "
                        "the same command")


def timeout_seconds() -> float:
    """How long a rank waits for the others (``FEATX_DIST_TIMEOUT``, default 1800 s)."""
    return environment.get(TIMEOUT_ENV)


def world_size() -> int:
    """The number of processes torchrun (or srun) started (1 outside them)."""
    return environment.get("WORLD_SIZE")


@contextmanager
def joined(device: torch.device) -> Iterator[Group]:
    """The group this process runs in: :data:`SINGLE` outside torchrun; under it the default
    process group, joined here (gloo, plus NCCL for CUDA tensors) and left on exit -- or the
    caller's, when it initialised one already (left to it)."""
    import torch.distributed as dist

    if world_size() <= 1 and not (dist.is_available() and dist.is_initialized()):
        yield SINGLE
        return
    if not dist.is_available():
        raise DistributedError("this torch build has no torch.distributed; run one process")
    ours = not dist.is_initialized()
    if ours:
        missing = [v for v in ("RANK", "MASTER_ADDR", "MASTER_PORT")
                   if environment.get(v) is None]
        if missing:
            raise DistributedError(f"WORLD_SIZE={world_size()} but {', '.join(missing)} unset: "
                                   "start featx with torchrun (or srun), which sets them all")
        backend = "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"
        try:
            dist.init_process_group(
                backend, timeout=datetime.timedelta(seconds=timeout_seconds()),
                device_id=device if device.type == "cuda" else None)
        except (RuntimeError, ValueError) as exc:
            raise DistributedError(f"rank {environment.get('RANK')} could not join the other "
                                   f"ranks at {environment.get('MASTER_ADDR')}:"
                                   f"{environment.get('MASTER_PORT')} "
                                   f"({str(exc).strip().splitlines()[0] if str(exc) else exc!r})"
                                   ) from None
    try:
        yield TorchGroup()
    finally:
        if ours:
            dist.destroy_process_group()


def trace(stage: str, group: Group, seconds: float) -> None:
    """Append this rank's figures for ``stage`` (seconds, bytes it put into collectives) to
    the file ``FEATX_DIST_TRACE`` names, if any (benchmarks/scale_out.py reads them)."""
    import json

    path = environment.get(TRACE_ENV)  # checked writable before the work (environment.check)
    if not path:
        return
    line = json.dumps({"stage": stage, "rank": group.rank, "world": group.world,
                       "seconds": round(seconds, 4), "sent_bytes": group.sent})
    try:
        with open(path, "a") as f:
            f.write(line + "\n")
    except OSError as exc:
        raise errors.OutputError(f"could not append to {TRACE_ENV}={path} ({exc.strerror}); "
                                 "the stage's output is complete") from None


def split(items: list[T], group: Group) -> list[T]:
    """This rank's share of ``items``: items r, r + world, ... (shards, say)."""
    return items[group.rank::group.world]


def places(counts: Sequence[int], group: Group) -> np.ndarray:
    """The rows of the whole (shards in order, ``counts`` rows each) that this rank's shards
    (:func:`split`) hold, in order: where its rows stand in one process's order."""
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    mine = range(group.rank, len(counts), group.world)
    return np.concatenate([np.arange(starts[i], starts[i + 1]) for i in mine]
                          or [np.zeros(0, np.int64)])
