"""The ``featx`` command group: logging set up once, errors turned into one-line messages."""

from __future__ import annotations

import logging
import signal
import sys

import click
from rich.logging import RichHandler

import featx
from featx import interrupt
from featx.cli import options
from featx.errors import FeatxError
from featx.cli.progress import stderr
from featx.stages import process_setup


class OneLineUsageError(click.UsageError):
    """A usage error as one ``Error:`` line naming the option (click prints the usage and a
    hint above it); still exit status 2."""

    def show(self, file=None) -> None:
        hint = f" (featx {self.ctx.command_path.split(' ', 1)[-1]} -h)" if self.ctx else ""
        click.echo(f"Error: {self.format_message()}{hint}", err=True)


# every command: (module under featx.cli, its click command, the line `featx --help` shows).
# A command's module (and torch, which the stages import) loads only when that command runs
# or shows its own help: `featx --help` and `--version` answer without either.
COMMANDS = {
    "extract": ("extract", "extract", "Activations of a backbone over images, as shards."),
    "fit-pca": ("fit", "fit_pca_cmd", "A PCA of local features of a layer."),
    "fit-gmm": ("fit", "fit_gmm_cmd", "A diagonal GMM of PCA-reduced local features."),
    "fit-guidance": ("fit", "fit_guidance_cmd", "Scheme 2's trained guidance layer."),
    "encode": ("encode", "encode", "Activation shards -> encoding shards."),
    "join": ("encode", "join", "Encodings of the same images side by side."),
    "train-svm": ("classify", "train_svm", "One-vs-rest linear SVMs on encodings."),
    "evaluate": ("classify", "evaluate", "The metrics of encodings under an SVM."),
    "export": ("predict", "export", "A trained chain as one classifier file."),
    "predict": ("predict", "predict", "Labels for new photos from a classifier file."),
    "maps": ("draw", "maps", "Where the evidence lies in each image."),
    "layers": ("layers", "layers", "The backbones, and a backbone's layers."),
    "reproduce": ("reproduce", "reproduce", "The papers' tables beside ours."),
}


class FeatxGroup(click.Group):
    """Reports a :class:`FeatxError` as ``Error: message`` and exit status 1, no traceback;
    loads a command's module only when that command is used (:data:`COMMANDS`)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        if name not in self.commands:
            import importlib

            module, attr, short = COMMANDS[name]
            command = getattr(importlib.import_module(f"featx.cli.{module}"), attr)
            command.short_help = short
            command.params += _late_options()
            self.add_command(command, name)
        return self.commands[name]

    def shell_complete(self, ctx: click.Context, incomplete: str):
        """Command names (and the group's options) from :data:`COMMANDS`: click's own would
        import every command, and torch, for each one's help line."""
        from click.shell_completion import CompletionItem

        return [CompletionItem(name, help=short) for name, (_, _, short) in COMMANDS.items()
                if name.startswith(incomplete)] + click.Command.shell_complete(self, ctx,
                                                                                incomplete)

    def format_commands(self, ctx: click.Context, formatter) -> None:
        """The command list from :data:`COMMANDS`, without importing a command."""
        with formatter.section("Commands"):
            formatter.write_dl([(name, short) for name, (_, _, short) in COMMANDS.items()])

    def main(self, args=None, *rest, **kwargs):
        options.ARGV[:] = list(args) if args is not None else sys.argv[1:]
        self.stopped = False
        try:
            # before any command loads torch: OpenMP waits passively if the cores are taken;
            # glibc keeps freed host memory; SIGTERM, Ctrl-C: safe stops
            with process_setup():
                return super().main(args, *rest, **kwargs)
        finally:
            if self.stopped and args is None:  # the featx program, exiting: a further Ctrl-C
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # cannot break its atexit hooks

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except FeatxError as exc:
            raise click.ClickException(_ranked(str(exc))) from exc
        except click.UsageError as exc:  # a bad option value: one line, exit 2, as scripts expect
            raise OneLineUsageError(exc.format_message(), exc.ctx) from exc
        except interrupt.Terminated as exc:  # SIGTERM, or Ctrl-C (Interrupted)
            self.stopped = True
            # the stages' cleanup ran on the way out: only whole files are left
            stderr.print(f"Error: {exc.what}; complete outputs are kept, rerun to resume",
                         markup=False, highlight=False)
            ctx.exit(exc.code)



def _ranked(message: str) -> str:
    """Under torchrun an error says which rank it is, once (torchrun interleaves every
    rank's stderr); a message that names its rank already is left as it is."""
    from featx import environment

    try:
        rank, world = environment.get("RANK"), environment.get("WORLD_SIZE")
    except FeatxError:  # the variables themselves are what is wrong: the message says so
        return message
    if world <= 1 or rank is None or message.startswith("rank "):
        return message
    return f"rank {rank} of {world}: {message}"


@click.group(cls=FeatxGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(featx.__version__, prog_name="featx")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr; no progress bars.")
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Image representations from CNN activations: extract, fit, encode, train, evaluate.

    Every command prints the paths it wrote on stdout, one per line, and its logs and progress
    on stderr, so commands chain in pipes.
    """
    ctx.obj = {}
    _verbosity(ctx, verbose, quiet)


def _verbosity(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Logging for -v / -q: featx's own messages at INFO by default, other libraries' only
    when they warn; -q: errors only, no progress bars."""
    # on a terminal rich's handler; elsewhere (a log file, CI) plain lines, neither padded
    # nor wrapped to 80 columns
    handler = RichHandler(console=stderr, show_path=False, show_time=False) \
        if stderr.is_terminal else logging.StreamHandler()
    if not stderr.is_terminal:
        handler.setFormatter(logging.Formatter("%(levelname)-8s %(message)s"))
    logging.basicConfig(level=logging.ERROR if quiet else logging.WARNING, format="%(message)s",
                        force=True, handlers=[handler])
    logging.getLogger("featx").setLevel(
        logging.ERROR if quiet else logging.DEBUG if verbose else logging.INFO)
    ctx.find_root().obj["quiet"] = quiet


def _after_the_command(ctx: click.Context, param: click.Parameter, value) -> None:
    """-v / -q given after the command (``featx extract -q ...``) mean what they mean before it."""
    if value:
        root = ctx.find_root()
        quiet = root.obj.get("quiet", False) or (param.name == "late_quiet")
        verbose = root.params.get("verbose", 0) + (value if param.name == "late_verbose" else 0)
        _verbosity(ctx, verbose, quiet)


def _late_options() -> list[click.Option]:
    return [click.Option(["-v", "--verbose", "late_verbose"], count=True, expose_value=False,
                         callback=_after_the_command, help="As `featx -v`."),
            click.Option(["-q", "--quiet", "late_quiet"], is_flag=True, expose_value=False,
                         callback=_after_the_command, help="As `featx -q`.")]


def all_commands() -> dict[str, click.Command]:
    """Every command, loaded (for tests and documentation)."""
    ctx = click.Context(main)
    return {name: main.get_command(ctx, name) for name in main.list_commands(ctx)}
