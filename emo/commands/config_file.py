"""Config files for commands: ``--config FILE`` (YAML or TOML) sets option defaults, flags given on the command line
override them; ``--write-default-config [toml|yaml]`` prints a commented default; :func:`write_used_config`
writes the options a store or run was made with in the same format, so ``--config`` reproduces it.

Keys are the long option names without dashes (``visual-weights``; ``visual_weights`` is read too) and the
argument names (``dataset-dir``). What a file sets is applied through click's ``default_map``, so it is
validated and converted like a flag; a key the command does not have is an error naming the valid ones.
"""

from __future__ import annotations

import json
import logging
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from emo.errors import UsageError

FORMATS = ("toml", "yaml")
#: never written to a file: credentials, what would destroy data on a re-run, and output-only switches
_NOT_WRITTEN = {"config", "write_default_config", "storage_option", "dst_storage_option", "overwrite", "verbose",
                "quiet", "as_json", "help"}
_META_FORMAT = "emo.config_format"
log = logging.getLogger("emo")


def _key(param: click.Parameter) -> str:
    """The name a file uses for ``param``: its first long option without dashes, else its own name."""
    longs = [o for o in getattr(param, "opts", []) if o.startswith("--")]
    return longs[0][2:] if longs else (param.name or "").replace("_", "-")


def _writable(command: click.Command) -> list[click.Parameter]:
    return [p for p in command.params if p.name not in _NOT_WRITTEN and not getattr(p, "hidden", False)]


def file_format(path: str | Path) -> str:
    """``toml`` or ``yaml`` from a file name (``.toml``, ``.yaml``/``.yml``)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".toml":
        return "toml"
    if suffix in (".yaml", ".yml"):
        return "yaml"
    raise UsageError(f"--config {path}: a config file must end in .toml, .yaml or .yml")


def read_config(path: str | Path, command: click.Command) -> dict[str, Any]:
    """The file's settings as ``default_map`` entries (parameter name -> value) for ``command``."""
    fmt = file_format(path)
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise UsageError(f"--config {path}: {e.strerror or e}") from e
    try:
        if fmt == "toml":
            import tomllib

            data: Any = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text) or {}
    except Exception as e:  # tomllib.TOMLDecodeError, yaml.YAMLError: both say where
        raise UsageError(f"--config {path}: not valid {fmt.upper()}: {e}") from e
    if not isinstance(data, dict):
        raise UsageError(f"--config {path}: expected a table of option = value, got a {type(data).__name__}")
    names = {}
    for p in _writable(command):
        names[_key(p)] = p.name
        names[p.name or ""] = p.name
        names[_key(p).replace("-", "_")] = p.name
    unknown = sorted(k for k in data if k not in names)
    if unknown:
        valid = ", ".join(sorted(_key(p) for p in _writable(command)))
        raise UsageError(f"--config {path}: unknown option(s) {', '.join(unknown)} for `emo {command.name}`; "
                         f"valid: {valid}")
    return {names[k]: v for k, v in data.items() if v is not None}


def _value(value: Any) -> Any:
    """A value a file can hold (tuples as lists), None for "no value" (click marks a missing default with its own
    sentinel object); credentials inside URLs (user:password@, query strings) replaced by ``***``."""
    from emo.features_store.location import redact_url_secrets

    if isinstance(value, (list, tuple)):
        return [_value(v) for v in value]
    if isinstance(value, str):
        return redact_url_secrets(value)
    return value if isinstance(value, (int, float, bool)) else None


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a JSON string is a TOML basic string


def _yaml_value(value: Any) -> str:
    import yaml

    return yaml.safe_dump(_value(value), default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def render(entries: list[tuple[str, Any, str | None, bool]], fmt: str) -> str:
    """Lines of a config file: per entry (key, value, help, set) a comment with the help and ``key = value``,
    itself commented out when the entry is not set (a default shown for reference; None when there is none)."""
    out: list[str] = []
    for key, value, help_text, is_set in entries:
        if help_text:
            out += [f"# {line}" for line in textwrap.wrap(help_text, 100)]
        if value is None:
            out.append(f"# {key}{' =' if fmt == 'toml' else ':'} (no default)")
        else:
            text = _toml_value(value) if fmt == "toml" else _yaml_value(value)
            line = f"{key} = {text}" if fmt == "toml" else f"{key}: {text}"
            out.append(line if is_set else f"# {line}")
        out.append("")
    return "\n".join(out)


def _help(param: click.Parameter) -> str | None:
    if isinstance(param, click.Option):
        return param.help
    return f"argument {param.human_readable_name}"


def default_config(ctx: click.Context, fmt: str) -> str:
    """The commented default of ``ctx``'s command: every option with its help and its default, commented out
    (uncomment what you change: a setting counts as chosen, e.g. over a --preset's value); what a ``--config``
    file read before sets is set."""
    entries = []
    loaded = ctx.default_map or {}
    for p in _writable(ctx.command):
        value = _value(p.get_default(ctx, call=True))
        entries.append((_key(p), value, _help(p), p.name in loaded))
    header = (f"# emo {ctx.command.name}: options, each shown with its default. Uncomment what you change; a setting\n"
              "# here counts as chosen (it overrides a --preset), flags on the command line override the file.\n\n")
    return header + render(entries, fmt)


def write_used_config(ctx: click.Context, path: Path, note: str) -> Path | None:
    """Write the options ``ctx`` ran with to ``path`` (its suffix replaced by the format of the ``--config`` file
    read, TOML otherwise): what the user set (command line, environment, config file) as settings, the defaults
    as comments, so ``--config`` reproduces the run and a default that changes later does not creep in. Returns
    None, with a warning, when the file cannot be written."""
    fmt = ctx.meta.get(_META_FORMAT, "toml")
    path = path.with_suffix(f".{fmt}")
    explicit = {click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT,
                click.core.ParameterSource.DEFAULT_MAP}
    entries = []
    for p in _writable(ctx.command):
        value = _value(ctx.params.get(p.name or ""))
        is_set = ctx.get_parameter_source(p.name or "") in explicit
        entries.append((_key(p), value, _help(p), is_set))
    text = f"# {note}\n# reproduce with: emo {ctx.command.name} --config {path.name}\n\n" + render(entries, fmt)
    try:
        path.write_text(text)
    except OSError as e:  # a read-only or full disk: the run's results are written already, they stand
        log.warning("could not write the options used to %s: %s", path, e.strerror or e)
        return None
    return path


def _load(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is None:
        return
    try:
        settings = read_config(value, ctx.command)
    except UsageError as e:
        raise click.BadParameter(str(e).removeprefix(f"--config {value}: "), ctx, param) from None
    ctx.default_map = {**(ctx.default_map or {}), **settings}
    ctx.meta[_META_FORMAT] = file_format(value)


def _print_default(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is None or ctx.resilient_parsing:
        return
    # click runs eager options in command-line order: a --config given after this one has not been read yet
    args = sys.argv[1:]
    flags = [i for i, a in enumerate(args) if a.split("=", 1)[0] in ("--config", "--write-default-config")]
    if ctx.default_map is None and len(flags) == 2 and args[flags[0]].startswith("--write-default-config"):
        raise click.UsageError("give --config before --write-default-config (to print the defaults it sets)", ctx)
    click.echo(default_config(ctx, value), nl=False)
    ctx.exit(0)


def config_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--config FILE`` and ``--write-default-config [toml|yaml]`` (both processed before the other options)."""
    func = click.option(
        "--write-default-config",
        type=click.Choice(FORMATS),
        is_flag=False,
        flag_value="toml",
        default=None,
        expose_value=False,
        is_eager=True,
        callback=_print_default,
        help="Print a commented default config file (TOML, or =yaml) for this command and exit; with --config, "
        "the defaults it sets.",
    )(func)
    return click.option(
        "--config",
        type=click.Path(dir_okay=False, path_type=str),
        expose_value=False,
        is_eager=True,
        callback=_load,
        help="Read options from a YAML or TOML file (keys are the long option names, e.g. visual-weights); flags "
        "given on the command line override it.",
    )(func)
