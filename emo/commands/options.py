"""Options and error handling shared by every ``emo`` command: logging (-v/-q), storage options, emo's errors
as one line on stderr with their exit code."""

from __future__ import annotations

import functools
import importlib
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from emo.errors import EmoError

log = logging.getLogger("emo")

#: ``ctx.obj`` of the console script (``emo.cli.main``): the process is emo's alone, so process-wide settings are
#: its commands' to make. Absent where the click group runs inside another program (CliRunner, an application).
OWN_PROCESS = "emo console script"


def own_process() -> bool:
    """Whether the running command is the whole process (started as ``emo ...``)."""
    return click.get_current_context().find_root().obj == OWN_PROCESS


def _setup_logging(verbose: int, quiet: bool) -> None:
    from rich.console import Console
    from rich.logging import RichHandler

    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    console = Console(stderr=True)
    if console.is_terminal:
        handler: logging.Handler = RichHandler(console=console, show_time=False, show_path=False, markup=False)
    else:  # one unwrapped line per message for log files and pipes
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s emo: %(message)s"))
    root = logging.getLogger("emo")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # Dask's own records (its logger has its own handler): warnings and errors, its progress notes with -vv.
    # Importing distributed sets its logger to the level of Dask's config (INFO by default), so the level goes
    # into that config too: else a run against --scheduler (no LocalCluster to silence it) prints INFO records
    # such as "Batched Comm Closed" with a traceback when the scheduler goes away.
    dask_level = "info" if verbose > 1 else "warning"
    if "dask" in sys.modules:
        import dask

        dask.config.set({"logging.distributed": dask_level})
    else:
        os.environ["DASK_LOGGING__DISTRIBUTED"] = dask_level
    logging.getLogger("distributed").setLevel(logging.INFO if verbose > 1 else logging.WARNING)


def common(func: Callable[..., Any]) -> Callable[..., Any]:
    """-v/--verbose and -q/--quiet on every command; sets up logging before the command runs."""

    @click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv for debug).")
    @click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors; no progress bar.")
    @functools.wraps(func)
    def wrapper(*args: Any, verbose: int, quiet: bool, **kwargs: Any) -> Any:
        _setup_logging(verbose, quiet)
        return func(*args, quiet=quiet, **kwargs)

    return wrapper


def storage_options_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--storage-option",
        "storage_option",
        multiple=True,
        metavar="KEY=VALUE",
        help="fsspec storage option for a remote store (repeatable; e.g. endpoint_url=..., key=..., secret=...).",
    )(func)


def comma_list(value: str | None) -> tuple[str, ...] | None:
    """"a,b, c" -> ("a", "b", "c"); None for an empty value."""
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else None


class EmoGroup(click.Group):
    """Turns emo's own errors into one line on stderr and the error's exit code (2 for usage errors, 130 for Ctrl-C)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EmoError as exc:
            click.echo(f"emo: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            # a command that has results to keep (extract) catches Ctrl-C itself and reports what it kept
            click.echo("emo: interrupted", err=True)
            ctx.exit(130)


def _load(module: str, attribute: str) -> Any:
    return getattr(importlib.import_module(module), attribute)


class LazyChoice(click.Choice):
    """A choice whose values are a library registry or constant (``module``, ``attribute``), read when first
    needed (help, validation, completion): the CLI copies no list, and building it imports no model code."""

    def __init__(self, module: str, attribute: str, extra: tuple[str, ...] = ()) -> None:
        self._source = (module, attribute)
        self._extra = extra
        self.case_sensitive = True

    @property
    def choices(self) -> tuple[str, ...]:  # type: ignore[override]
        return (*self._extra, *_load(*self._source))


class RegistryHelpOption(click.Option):
    """An option whose help names a registry's entries: ``{names}`` in ``help`` becomes them, read when the help
    is shown (for values that are not a plain choice, e.g. ``--selector text=l1,audio=tree``)."""

    def __init__(self, *args: Any, registry: tuple[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._registry = registry

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        template = self.help
        self.help = (template or "").replace("{names}", ", ".join(_load(*self._registry)))
        try:
            return super().get_help_record(ctx)
        finally:
            self.help = template
