"""The stages: one module per command, each a :class:`Stage` run by one driver.

A stage supplies its frozen config (validated when made, before any file is read), its
:meth:`Stage.plan` (read and check the inputs; the output is not touched yet) and its
:meth:`Stage.work` (compute and write, yielding each path as it is complete). The driver,
:meth:`Stage.run`, owns what every stage repeats, in this order:

1. the process set-up a run needs (glibc keeps freed host memory; SIGTERM stops the run at a
   safe point, as Ctrl-C does) when the caller has not made it already (the CLI has);
2. the device, resolved once (``cfg.device``), and the process group (:mod:`featx.dist`:
   under torchrun torch.distributed is joined, every rank's settings checked equal, and a
   stage that is not ``distributed`` runs on rank 0 alone);
3. the plan; then the refusal of an output that is, holds or lies inside one of its inputs;
4. the output held for the run (:func:`featx.io.output_folder` for shard folders,
   :func:`featx.io.model_output` for files) -- by rank 0 for every rank: a lock,
   writability checked before any work, replaced only by complete new output;
5. resume-or-refuse of existing shards (:meth:`Output.existing`), provenance
   (:meth:`Output.provenance`), progress (:meth:`Output.start`), interrupt polling.

``run`` runs to completion and returns the paths written; ``on_written`` hears of each the
moment it is complete (the CLI prints it, so the next stage in a pipe can start).

``progress`` is a :data:`Progress`: called with a description and a total, it returns the
function that advances that task (``advance(n=1, note=None)``; a note such as a loss is shown
beside the bar). The CLI passes one that draws rich progress bars.

No stage imports another; what two stages share lives below them (``featx.sampling``,
``featx.io``, ``featx.encoding``, ``featx.inference``).
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from pathlib import Path
from typing import Any, ClassVar

Progress = Callable[[str, "int | None"], Callable[..., None]]

FOLDER, FILE, OPTIONAL_FILE = "folder", "file", "optional file"


def start(progress: Progress | None, description: str, total: int | None) -> Callable[..., None]:
    """The advance function of a new task (a no-op without ``progress``)."""
    return progress(description, total) if progress is not None else (lambda n=1, note=None: None)


@contextmanager
def process_setup() -> Iterator[None]:
    """What a run needs of the process, made once: OpenMP waits passively when the cores are
    taken (:func:`featx.device.wait_politely_when_busy`; effective only before torch loads,
    as in the command line), glibc keeps freed host memory
    (:func:`featx.device.keep_host_memory`), and on the main thread SIGTERM and Ctrl-C stop
    the run at its next safe point, its cleanup run (:mod:`featx.interrupt`). A handler the
    caller installed (the CLI's, or the application's own) is left alone."""
    from featx import interrupt
    from featx.device import keep_host_memory, wait_politely_when_busy

    wait_politely_when_busy()  # only before torch loads: the command line's first call
    keep_host_memory()
    main = threading.current_thread() is threading.main_thread()
    # SIGTERM and Ctrl-C, where the caller left Python's defaults
    defaults = {signal.SIGTERM: (signal.SIG_DFL, None),
                signal.SIGINT: (signal.default_int_handler,)}
    ours = {s: signal.getsignal(s) for s, d in defaults.items()
            if main and signal.getsignal(s) in d}
    if ours:
        interrupt.reset()
        for s in ours:
            signal.signal(s, interrupt.request)
    try:
        yield
    finally:
        for s, previous in ours.items():
            signal.signal(s, previous if previous is not None else signal.SIG_DFL)
        if ours:
            interrupt.reset()


def refuse_overlap(out: str | Path | None, inputs: Iterable[str | Path]) -> None:
    """An output is never an input: refuse ``out`` when it is one of ``inputs``, a folder
    holding one, or a path inside one (with or without ``overwrite``)."""
    from featx.errors import OutputError

    if out is None:
        return
    o = Path(os.path.abspath(out))
    above = set(o.parents)  # once, not per input: extract passes every image
    for item in inputs:
        i = Path(os.path.abspath(item))
        if o == i or i in above or o in i.parents:
            how = "" if o == i else "inside " if i in above else "a folder holding "
            raise OutputError(f"the output {out} is {how}the input {item}; an output is "
                              "never an input, write it elsewhere")


class Output:
    """What the driver hands a stage's :meth:`Stage.work`: where to write, and the run's
    shared services."""

    def __init__(self, stage: Stage, held: Any, progress: Progress | None):
        self.stage = stage
        self.folder = held if stage.output == FOLDER else None  # a featx.io OutputFolder
        self.path: Path | None = held.path if stage.output == FOLDER and held else held
        self._progress = progress

    def start(self, description: str, total: int | None) -> Callable[..., None]:
        return start(self._progress, description, total)

    def provenance(self, **params: Any) -> dict[str, Any]:
        """The attributes the output records: featx's version, the command, ``params``."""
        from featx.io import provenance

        return provenance(command=self.stage.cfg.command, **params)

    def existing(self, target: Path, signature: Mapping[str, Any], ids: Sequence[str]
                 ) -> dict[str, Any] | None:
        """The header of ``target`` if it is a complete output of these settings for these
        images, to keep (resume); None to (re)make it; any other existing file refused
        (``overwrite`` remakes everything)."""
        from featx.io import resume_or_refuse

        return None if self.stage.cfg.overwrite else resume_or_refuse(target, signature, ids)

    @contextmanager
    def hold_folder(self, folder: str | Path) -> Iterator[Path]:
        """A second output folder (evaluate's plots), held like the first: created and
        checked writable, locked for the run; its files are replaced as they are written."""
        from featx.io import output_folder

        with output_folder(folder, overwrite=False, command=self.stage.cfg.command) as held:
            yield held.path

    @contextmanager
    def hold_file(self, path: str | Path, inputs: Iterable[str | Path]) -> Iterator[Path]:
        """A second output file (evaluate's --scores), held like a model file: never one of
        ``inputs``, refused if it exists (without ``overwrite``), its folder created and
        checked writable, locked for the run."""
        from featx.io import model_output

        refuse_overlap(path, inputs)
        with model_output(path, overwrite=self.stage.cfg.overwrite,
                          command=self.stage.cfg.command) as held:
            yield held


class Stage:
    """One stage: a config, a plan, a work; :meth:`run` is the driver (see the module doc).

    Subclasses set ``name`` (the command), ``output`` (``FOLDER`` of shards, ``FILE``, or
    ``OPTIONAL_FILE``) and ``polls`` (whether :meth:`work` calls :func:`featx.interrupt.check`
    at safe points; a stage that does not is stopped by SIGTERM at once, its cleanup run).
    """

    name: ClassVar[str]
    output: ClassVar[str] = FOLDER
    polls: ClassVar[bool] = True
    # what its progress counts (the command line's bars and featx reproduce's say it)
    unit: ClassVar[str] = "img"
    # under torchrun: True, every rank runs plan and work, sharing it through ``self.group``
    # (featx.dist); False, rank 0 runs the stage alone and the other ranks return at once
    distributed: ClassVar[bool] = False

    def __init__(self, cfg: Any):
        from featx.dist import SINGLE

        self.cfg = cfg
        self.device = None
        self.group = SINGLE
        self.rank, self.world = 0, 1

    # --- what a stage supplies ---------------------------------------------------------------
    def plan(self, inputs: Any) -> Any:
        """Read and check the inputs; the output is not touched yet."""
        return inputs

    def inputs_of(self, plan: Any) -> list[Path]:
        """The files the plan reads (an output may not be, hold or lie inside one)."""
        return []

    def work(self, plan: Any, out: Output) -> Iterator[Path]:
        raise NotImplementedError

    # --- the driver ----------------------------------------------------------------------------
    def run(self, inputs: Any, out: str | Path | None = None, *,
            progress: Progress | None = None,
            on_written: Callable[[Path], None] | None = None) -> list[Path]:
        """Run the stage to completion; the paths this process wrote, in order."""
        from featx import dist, environment, interrupt
        from featx.device import resolve_device
        from featx.errors import InputError

        environment.check()  # every variable featx reads, before any work
        if out is None and self.output != OPTIONAL_FILE:
            raise InputError(f"{self.name} needs an output (out=, -o)")
        written: list[Path] = []
        started = time.perf_counter()
        with process_setup():
            self.device = resolve_device(getattr(self.cfg, "device", "cpu"))
            with dist.joined(self.device) as group:
                self.group, self.rank, self.world = group, group.rank, group.world
                group.check_same(self.fingerprint(inputs, out))
                if not (self.distributed or group.leader):
                    return written  # rank 0 runs this stage alone; the others are done
                plan = self.plan(inputs)
                refuse_overlap(out, self.inputs_of(plan))
                with ExitStack() as stack:
                    held = self._hold(stack, out, group)
                    stack.enter_context(interrupt.polling() if self.polls else nullcontext())
                    # under torchrun the paths are said once, by rank 0, when all are written
                    tell = on_written if group.world == 1 else None
                    for path in self.work(plan, Output(self, held, progress)):
                        written.append(path)
                        if tell is not None:
                            tell(path)
                        interrupt.check()
                if self.distributed:
                    group.barrier()  # every rank returns once the output is complete
                if group.world > 1 and on_written is not None:
                    self._tell_all(written, group, on_written)
                dist.trace(self.name, group, time.perf_counter() - started)
        return written

    def _tell_all(self, written: list[Path], group: Any, on_written: Callable[[Path], None]
                  ) -> None:
        """Under torchrun: rank 0 hears of every rank's paths, in order (a pipe reads one
        list, not the ranks' interleaved); the other ranks of nothing. A stage rank 0 runs
        alone has its paths already."""
        every = group.objects([str(p) for p in written]) if self.distributed else [written]
        if group.leader:
            for path in sorted({str(p) for part in every for p in part}):
                on_written(Path(path))

    def _hold(self, stack: ExitStack, out: str | Path | None, group: Any) -> Any:
        """The output held for the run: a shard folder (rank 0 holds it for every rank), a
        model file (rank 0's; the others get its path and write nothing), or None."""
        from featx.io import model_output, output_folder

        if out is None:
            return None
        if self.output == FOLDER:
            return stack.enter_context(output_folder(
                out, overwrite=self.cfg.overwrite, command=self.cfg.command, group=group))
        group.lead(lambda: stack.enter_context(model_output(
            out, overwrite=self.cfg.overwrite, command=self.cfg.command)))
        return Path(out)

    def fingerprint(self, inputs: Any, out: str | Path | None) -> dict[str, Any]:
        """What every rank of a torchrun must agree on: featx's version, the stage, each
        setting, the output and the inputs."""
        import dataclasses

        from featx import __version__

        settings = {f.name: getattr(self.cfg, f.name) for f in dataclasses.fields(self.cfg)
                    if f.name != "command"} if dataclasses.is_dataclass(self.cfg) else {}
        records = getattr(inputs, "records", None)
        items = ([str(getattr(r, "path", r)) for r in records] if records is not None
                 else [str(i) for i in inputs] if isinstance(inputs, (list, tuple))
                 else [str(inputs)])
        # a digest, not the list: a million image paths need not travel to every rank
        digest = hashlib.sha256("\0".join(items).encode()).hexdigest()[:16]
        return {"featx version": __version__, "stage": self.name, **settings,
                "output": str(out), "inputs": f"{len(items)} input(s), digest {digest}"}


def stages() -> dict[str, type[Stage]]:
    """Every stage class, by command name (imports each stage module)."""
    import importlib
    import pkgutil

    import featx.stages as pkg

    found: dict[str, type[Stage]] = {}
    for info in pkgutil.iter_modules(pkg.__path__):
        module = importlib.import_module(f"featx.stages.{info.name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, Stage) and obj is not Stage \
                    and obj.__module__ == module.__name__:
                found[obj.name] = obj
    return found
