"""``emo store``: inspect, verify, realign, merge, pack and copy feature stores."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from typing import Any

import click

from emo.commands.options import common, storage_options_option

log = logging.getLogger("emo")


@click.group()
def store() -> None:
    """Inspect and share feature stores."""


@store.command("info")
@click.argument("store_path", metavar="STORE")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@storage_options_option
@common
def store_info(store_path: str, as_json: bool, storage_option: tuple[str, ...], quiet: bool) -> None:
    """Show what a store holds: clips by label and status, arrays, provenance."""
    from emo.features_store import FeatureStore
    from emo.features_store.info import render_info
    from emo.features_store.location import parse_storage_options

    info = FeatureStore.open(store_path, parse_storage_options(storage_option)).info()
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
    else:
        render_info(info)


def dst_storage_options_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--dst-storage-option",
        "dst_storage_option",
        multiple=True,
        metavar="KEY=VALUE",
        help="Storage option for the destination only, when it differs from the source's (repeatable).",
    )(func)


def _dst_options(items: tuple[str, ...]) -> dict[str, Any] | None:
    from emo.features_store.location import parse_storage_options

    return parse_storage_options(items) if items else None


@store.command("realign")
@click.argument("store_path", metavar="STORE")
@storage_options_option
@common
def store_realign(store_path: str, storage_option: tuple[str, ...], quiet: bool) -> None:
    """Put a store extracted before the common time grid on it: recompute every time-based aligned and mask
    from values and offsets, so step i of every modality covers the same interval of the clip."""
    from emo.features_store.location import parse_storage_options
    from emo.features_store.realign import realign_store

    done = realign_store(store_path, parse_storage_options(storage_option))
    if done["already"]:
        click.echo(f"{done['store']} is already on the common time grid: nothing to do")
        return
    note = " (sampled frame times taken as k / fps: none were stored)" if done["face_times_approximate"] else ""
    click.echo(f"{done['store']}: realigned {', '.join(done['realigned']) or 'no sequence group'}{note}")


@store.command("verify")
@click.argument("store_path", metavar="STORE")
@click.option("--deep", is_flag=True, help="Read, hash and decode every chunk (default: metadata and sizes only).")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@storage_options_option
@common
def store_verify(store_path: str, deep: bool, as_json: bool, storage_option: tuple[str, ...], quiet: bool) -> None:
    """Check a store: schema and version, rows of every array against clips/clip_id, recorded checksums.

    Exits 1 when any problem is found; every problem names its array.
    """
    from emo.features_store.location import parse_storage_options
    from emo.features_store.verify import verify_store

    report = verify_store(store_path, parse_storage_options(storage_option), deep=deep)
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else "\n".join(report.lines()))
    if not report.ok:
        sys.exit(1)


@store.command("merge")
@click.argument("sources", nargs=-1, required=True, metavar="STORE...")
@click.option("-o", "--output", required=True, help="Merged store to write (a directory or an object-store URL).")
@click.option("--map-labels", metavar="OLD=NEW,...", help="Rename labels before the label sets are compared.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output store.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@storage_options_option
@dst_storage_options_option
@common
def store_merge(
    sources: tuple[str, ...],
    output: str,
    map_labels: str | None,
    overwrite: bool,
    as_json: bool,
    storage_option: tuple[str, ...],
    dst_storage_option: tuple[str, ...],
    quiet: bool,
) -> None:
    """Merge stores extracted with the same configuration and label set into a new store."""
    from emo.features_store.location import parse_storage_options
    from emo.features_store.merge import merge_stores, parse_label_map

    report = merge_stores(
        sources,
        output,
        label_map=parse_label_map(map_labels),
        overwrite=overwrite,
        storage_options=parse_storage_options(storage_option),
        output_options=_dst_options(dst_storage_option),
    )
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, default=str))
        return
    taken = ", ".join(f"{s['store']}: {s['n_taken']} of {s['n_clips']}" for s in report.sources)
    click.echo(f"merged {len(report.sources)} stores into {report.output}: {report.n_clips} clips ({taken})")
    if report.duplicates:
        click.echo(f"{len(report.duplicates)} clip(s) present in several stores (same media) were kept once")
    if report.dropped_arrays:
        click.echo(f"derived arrays not merged (recompute them): {', '.join(report.dropped_arrays)}")


def _transfer(
    verb: str,
    source: str,
    destination: str,
    overwrite: bool,
    as_json: bool,
    storage_option: tuple[str, ...],
    dst_storage_option: tuple[str, ...],
) -> None:
    """Pack (``verb`` "packed") or copy ("copied") a store, then print what was transferred."""
    from emo.features_store.location import parse_storage_options
    from emo.features_store.transfer import copy_store, pack_store

    report = (pack_store if verb == "packed" else copy_store)(
        source,
        destination,
        overwrite=overwrite,
        storage_options=parse_storage_options(storage_option),
        destination_options=_dst_options(dst_storage_option),
    )
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(
            f"{verb} {report.source} to {report.destination}: {report.n_objects} objects, {report.bytes} bytes, "
            f"{report.n_chunks_checked} chunk checksums checked, {report.seconds:.1f} s"
        )


@store.command("pack")
@click.argument("store_path", metavar="STORE")
@click.argument("output", metavar="OUT.zip")
@click.option("--overwrite", is_flag=True, help="Replace an existing zip.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@storage_options_option
@dst_storage_options_option
@common
def store_pack(store_path: str, output: str, quiet: bool, **kw: Any) -> None:
    """Pack a store into a single .zip file that emo (and zarr's ZipStore) reads directly."""
    _transfer("packed", store_path, output, **kw)


@store.command("copy")
@click.argument("source", metavar="SRC")
@click.argument("destination", metavar="DST")
@click.option("--overwrite", is_flag=True, help="Replace an existing store at DST.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@storage_options_option
@dst_storage_options_option
@common
def store_copy(source: str, destination: str, quiet: bool, **kw: Any) -> None:
    """Copy a store between a directory, a .zip and an object store, checking every chunk's checksum."""
    _transfer("copied", source, destination, **kw)
