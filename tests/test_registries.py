"""The CLI reads the registries: every registered head, selector, dataset adapter, feature token and preset is
named in the help of the commands that take it and accepted by them, and registering a new one is enough."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import click
import pytest
from click.testing import CliRunner

from emo.cli import cli
from emo.fusion.heads import HEADS
from emo.fusion.presets import PRESETS
from emo.fusion.selection import SELECTORS
from emo.pipeline.datasets import ADAPTERS
from emo.pipeline.extractors import EXTRACTORS

#: (registry, command, option taking one of its names, the option's other required arguments)
WHERE = [
    (HEADS, ["fuse"], "--method", ["--store", "s", "-o", "o"]),
    (HEADS, ["compare"], "--methods", ["--store", "s", "-o", "o"]),
    (SELECTORS, ["select"], "--method", ["--store", "s", "-o", "o"]),
    (SELECTORS, ["fuse"], "--selector", ["--store", "s", "-o", "o", "--method", "early"]),
    (ADAPTERS, ["extract"], "--dataset", ["DIR", "-o", "o"]),
    (EXTRACTORS, ["extract"], "--features", ["DIR", "-o", "o"]),
    (PRESETS, ["fuse"], "--preset", ["--store", "s", "-o", "o"]),
    (PRESETS, ["compare"], "--preset", ["--store", "s", "-o", "o"]),
]


def _help(command: list[str]) -> str:
    result = CliRunner().invoke(cli, [*command, "--help"], terminal_width=10_000)
    assert result.exit_code == 0, result.output
    return result.output


def _option_help(command: list[str], option: str) -> str:
    """The help line of ``option`` (unwrapped: one line per option at this terminal width)."""
    return next(line for line in _help(command).splitlines() if line.strip().startswith(option))


@pytest.mark.parametrize(("registry", "command", "option", "rest"), WHERE, ids=lambda v: None)
def test_every_entry_is_documented_and_accepted(registry, command: list[str], option: str, rest: list[str]) -> None:
    assert len(registry) > 0
    line = _option_help(command, option)
    group = cli
    for name in command:
        group = group.commands[name] if isinstance(group, click.Group) else group
    for name in registry:
        assert name in line, (name, line)
        ctx = group.make_context(command[-1], [*rest, option, name])  # parsing and conversion, nothing run
        assert ctx.params is not None


def test_an_unknown_name_is_refused_naming_the_choices() -> None:
    result = CliRunner().invoke(cli, ["fuse", "--store", "s", "-o", "o", "--method", "nope"])
    assert result.exit_code == 2
    assert "nope" in result.output and "attention" in result.output


def test_registering_is_all_it_takes() -> None:
    """A head, a selector, an adapter and an extractor registered by a plugin module (here: inline) show up in
    the commands' help and parse, with no other change."""
    code = textwrap.dedent(
        """
        from click.testing import CliRunner

        from emo.cli import cli
        from emo.fusion.heads import HEADS
        from emo.fusion.heads.early import EarlyFusionHead
        from emo.fusion.selection import SELECTORS
        from emo.fusion.selection.tree import TreeSelector
        from emo.pipeline.datasets import ADAPTERS, DatasetAdapter
        from emo.pipeline.datasets.folders import scan_folders
        from emo.pipeline.extractors import Extractor, register

        HEADS.register("toy-head")(type("ToyHead", (EarlyFusionHead,), {}))
        SELECTORS.register("toy-selector")(type("ToySelector", (TreeSelector,), {}))
        ADAPTERS.register("toy-dataset")(DatasetAdapter(scan_folders, detect=lambda probe: False))
        register(type("ToyExtractor", (Extractor,), {"token": "toy-token", "modality": "audio"}))

        def out(*args):
            result = CliRunner().invoke(cli, [*args, "--help"], terminal_width=10_000)
            assert result.exit_code == 0, result.output
            return result.output

        assert "toy-head" in out("fuse") and "toy-head" in out("compare")
        assert "toy-selector" in out("select") and "toy-selector" in out("fuse")
        assert "toy-dataset" in out("extract") and "toy-token" in out("extract")
        cli.commands["fuse"].make_context("fuse", ["--store", "s", "-o", "o", "--method", "toy-head"])
        cli.commands["select"].make_context("select", ["--store", "s", "-o", "o", "--method", "toy-selector"])
        cli.commands["extract"].make_context("extract", ["DIR", "-o", "o", "--dataset", "toy-dataset"])
        print("ok")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
