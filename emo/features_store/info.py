"""Human-readable rendering of ``FeatureStore.info()`` for ``emo store info``."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def result_console() -> Console:
    """Console for results on stdout: the terminal's width, or wide enough not to cut paths when piped."""
    probe = Console()
    return probe if probe.is_terminal else Console(width=160)


def partial_line(partial: dict[str, dict[str, Any]], examples: int = 3) -> str:
    """One line on the clips whose audio or video decoded only partly (their status stays ok)."""
    parts = []
    for modality, entry in partial.items():
        if entry["count"]:
            ids = ", ".join(entry["clip_ids"][:examples]) + (" ..." if entry["count"] > examples else "")
            parts.append(f"{modality} {entry['count']} ({ids})")
    if not parts:
        return "partly decoded: none (every decoded stream decoded whole)"
    head = "partly decoded (damaged packets skipped or stream cut short; features of the rest kept): "
    return head + "; ".join(parts)


def render_info(info: dict[str, Any], console: Console | None = None) -> None:
    """Print a store summary as tables."""
    console = console or result_console()
    ds = info.get("dataset", {})
    console.print(
        f"[bold]{info['store']}[/bold]  emo store v{info['emo_store_version']} (emo {info['emo_version']}), "
        f"created {info['created_at']}, updated {info['updated_at']}",
        highlight=False,
    )
    console.print(
        f"dataset: {ds.get('adapter')} at {ds.get('root')}  ·  {info['n_clips']} clips  ·  "
        f"{human_bytes(info['bytes_stored'])} on disk",
        highlight=False,
    )

    labels = Table(title="clips by label", title_justify="left")
    labels.add_column("label")
    labels.add_column("clips", justify="right")
    order = [*info["labels"], *sorted(set(info["clips_by_label"]) - set(info["labels"]))]
    for name in order:
        if name in info["clips_by_label"]:
            labels.add_row(name, str(info["clips_by_label"][name]))
    console.print(labels)

    status = Table(title="clips by status", title_justify="left")
    status.add_column("modality")
    names = sorted({s for c in info["clips_by_status"].values() for s in c})
    for name in names:
        status.add_column(name, justify="right")
    for modality, counts in info["clips_by_status"].items():
        status.add_row(modality, *(str(counts.get(n, 0)) for n in names))
    console.print(status)
    console.print(partial_line(info.get("partly_decoded", {})), highlight=False)

    arrays = Table(title="arrays", title_justify="left")
    for col, justify in (
        ("path", "left"),
        ("shape", "right"),
        ("dtype", "left"),
        ("chunks", "right"),
        ("on disk", "right"),
    ):
        arrays.add_column(col, justify=justify)
    for a in info["arrays"]:
        arrays.add_row(
            a["path"],
            " x ".join(map(str, a["shape"])),
            a["dtype"],
            " x ".join(map(str, a["chunks"])),
            human_bytes(a["bytes_stored"]),
        )
    console.print(arrays)

    extraction = info.get("extraction", {})
    prov = Table(title=f"extraction config (hash {extraction.get('config_hash')})", title_justify="left")
    prov.add_column("key")
    prov.add_column("value")
    for key, value in (extraction.get("config") or {}).items():
        prov.add_row(key, json.dumps(value))
    console.print(prov)

    software = Table(title="software", title_justify="left")
    software.add_column("package")
    software.add_column("version")
    for key, value in info.get("software", {}).items():
        software.add_row(key, str(value))
    console.print(software)
