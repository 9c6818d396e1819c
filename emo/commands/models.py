"""``emo models``: list the pretrained models emo can run and fetch their weights before a run."""

from __future__ import annotations

import json
import logging
import os
import time

import click

from emo.commands.options import common

log = logging.getLogger("emo")


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


@click.group()
def models() -> None:
    """Pretrained weights: where they live, whether they are here, fetching them."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON (full sha256).")
@common
def models_list(as_json: bool, quiet: bool) -> None:
    """Every visual backbone, face detector, text and speech model: source, location, presence, size, sha256."""
    from emo.pipeline.weights import sources, status

    rows = [status(s) for s in sources()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    lines = [("name", "kind", "source", "present", "size", "sha256", "location")]
    for r in rows:
        sha = "-" if r["sha256"] is None else r["sha256"][:12]
        if r["matches_published"] is False:
            sha += f" (NOT the published {r['published_sha256_prefix']})"
        elif r["matches_published"]:
            sha += " (= published)"
        present = "yes" if r["present"] else "no"
        lines.append((r["name"], r["kind"], r["source"], present, _size(r["size_bytes"]), sha, r["location"]))
    widths = [max(len(line[i]) for line in lines) for i in range(6)]
    for line in lines:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line[:6], widths, strict=True)) + "  " + line[6])


@models.command("fetch")
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@click.option(
    "--mirror",
    metavar="URL",
    help="Directory URL serving torch.hub checkpoints under their published names (a lab's mirror of "
    "download.pytorch.org); default $EMO_WEIGHTS_MIRROR, else the original URL. Hugging Face models follow "
    "$HF_ENDPOINT.",
)
@common
def models_fetch(names: tuple[str, ...], mirror: str | None, quiet: bool) -> None:
    """Download the weights of NAME... (a name from `emo models list`, a Hugging Face repo id, or a torch.hub-style
    checkpoint URL) into the libraries' own caches, hash-checked; present ones are left alone."""
    from emo.errors import UsageError
    from emo.pipeline.weights import MIRROR_ENV, fetch, fetch_url, find_source, offline

    if offline():
        raise UsageError("HF_HUB_OFFLINE is set: nothing can be fetched (unset it to download)")
    if mirror:
        os.environ[MIRROR_ENV] = mirror
    for name in names:
        start = time.perf_counter()
        if name.startswith(("http://", "https://")):
            files = [fetch_url(name, progress=not quiet)]
        else:
            files = fetch(find_source(name), progress=not quiet)
        size = sum(f.stat().st_size for f in files)
        log.info("%s: %s (%s) in %.1f s", name, files[0], _size(size), time.perf_counter() - start)
        click.echo(str(files[0]))
