"""report.html: one self-contained page per run or comparison (tables, inline figures, provenance; no network).

Built from the files a run directory holds (metrics.json, the PNG figures, modality_weights.json, fuse-config.*)
or a comparison's (compare.csv, significance.json, compare.png, runs/*), so ``emo report DIR`` rebuilds it at any
time. The store's extraction config (models, weights sha256) is read when the store can still be opened.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from emo.errors import UsageError

log = logging.getLogger("emo")

__all__ = ["write_report"]

#: (key, label) of the metrics table, headline first
METRICS = (
    ("ua", "UA (macro recall)"),
    ("wa", "WA (accuracy)"),
    ("f1_macro", "F1 macro"),
    ("wf1", "WF1"),
    ("precision_macro", "Precision macro"),
    ("roc_auc_macro", "ROC AUC macro"),
    ("log_loss", "Log loss"),
)

CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2330;max-width:1100px;
margin:0 auto;padding:24px 32px 64px;background:#fff}
h1{font-size:26px;margin:0 0 4px}
h2{font-size:19px;margin:36px 0 10px;padding-bottom:4px;border-bottom:1px solid #dde2ea}
h3{font-size:16px;margin:20px 0 8px}
.sub{color:#5b6578;margin:0 0 16px}
table{border-collapse:collapse;margin:6px 0 12px;font-variant-numeric:tabular-nums}
th,td{padding:5px 12px;border-bottom:1px solid #e6e9ef;text-align:right}
th{background:#f3f5f9;font-weight:600}th:first-child,td:first-child{text-align:left}
td.l,th.l{text-align:left}
.kv td{text-align:left;vertical-align:top}.kv td:first-child{color:#5b6578;white-space:nowrap;padding-right:24px}
code{font:13px ui-monospace,SFMono-Regular,Menlo,monospace;background:#f3f5f9;padding:1px 4px;border-radius:3px;
word-break:break-all}
.figs{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}figure{margin:0;max-width:100%}
figure img{max-width:100%;height:auto;border:1px solid #e6e9ef}
figcaption{color:#5b6578;font-size:13px}
.yes{color:#0a7a32;font-weight:600}.warn{color:#a15c00}
.cm td{min-width:44px}.hl{font-weight:600}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _num(x: Any, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _interval(s: dict[str, Any]) -> str:
    if s.get("single_run") or not s.get("ci"):
        return _num(s["mean"])
    lo, hi = s["ci"]
    return f"{_num(s['mean'])} <span class=sub>[{_num(lo)}, {_num(hi)}]</span>"


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table class='{cls}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _kv(rows: Iterable[tuple[str, str]]) -> str:
    """A two-column key/value table without a header row."""
    body = "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in rows)
    return f"<table class=kv><tbody>{body}</tbody></table>"


def _figure(path: Path, caption: str) -> str:
    if not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode()
    return (f"<figure><img alt='{_e(caption)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _store_models(location: str) -> list[tuple[str, str]]:
    """The store's extraction config hash and the models and weights its features came from (when it opens)."""
    try:
        from emo.features_store import FeatureStore

        info = FeatureStore.open(location).info()
    except Exception as e:  # moved, offline, credentials needed: the page says so instead
        return [("models", _e(f"store not readable now ({type(e).__name__}); see its emo store info"))]
    config = info.get("extraction", {}).get("config", {})
    out = [("features extracted", _e(", ".join(config.get("features", []))))] if config.get("features") else []
    if config.get("visual_model"):
        out.append(("visual model", f"{_e(config['visual_model'])} ({_e(config.get('visual_weights'))}), weights "
                                    f"sha256 <code>{_e(config.get('visual_weights_sha256') or '-')}</code>"))
    if config.get("text_model"):
        out.append(("text model", f"{_e(config['text_model'])}, weights sha256 "
                                  f"<code>{_e(config.get('text_weights_sha256') or '-')}</code>"))
    software = info.get("software", {})
    if software:
        out.append(("extracted with", _e(", ".join(f"{k} {v}" for k, v in software.items()))))
    return out


def _provenance(metrics: dict[str, Any], directory: Path) -> str:
    store = metrics.get("store", {})
    rows: list[tuple[str, str]] = [
        ("command", f"<code>{_e(metrics.get('command', '-'))}</code>"),
        ("emo version", _e(metrics.get("emo_version", "-"))),
        ("created", _e(metrics.get("created_at", "-"))),
        ("store", f"<code>{_e(store.get('location', '-'))}</code>"),
        ("store config hash", f"<code>{_e(store.get('config_hash', '-'))}</code>"),
    ]
    rows += _store_models(store.get("location", ""))  # escaped there
    checkpoint = directory / "model.safetensors"
    if checkpoint.is_file():
        from emo.pipeline.models import file_sha256

        rows.append(("checkpoint", f"model.safetensors, sha256 <code>{file_sha256(checkpoint)}</code>"))
    for command in ("fuse", "compare"):
        for options in sorted(directory.glob(f"{command}-config.*"))[:1]:
            rows.append(("options", f"{_e(options.name)} (reproduce with <code>emo {command} --config "
                                    f"{_e(options.name)}</code>)"))
    return "<h2>Provenance</h2>" + _kv(rows)


def _run_body(directory: Path, metrics: dict[str, Any]) -> str:
    summary = metrics["summary"]
    runs = metrics.get("runs", [])
    classes = metrics.get("class_names", [])
    config = metrics.get("config", {})
    parts = [
        "<h2>Test metrics</h2>",
        f"<p class=sub>Mean over {len(runs)} run(s) ({_e(metrics.get('split_protocol', '?'))} splits: "
        f"{_e(metrics.get('split_reason', ''))}); brackets: 95% interval over runs. {metrics.get('n_clips', '?')} "
        f"clips; standardisation {_e(metrics.get('standardize', '-'))}.</p>",
        _table(("metric", "mean [95% interval]"),
               [(_e(label), _interval(summary[k])) for k, label in METRICS if k in summary]),
    ]
    if len(runs) > 1:
        parts += ["<h3>Per run</h3>", _table(
            ("run", "train", "val", "test", "best epoch", "UA", "WA", "WF1"),
            [(_e(r["name"]), r["sizes"]["train"], r["sizes"]["val"], r["sizes"]["test"], r.get("best_epoch", "-"),
              _num(r["metrics"]["ua"]), _num(r["metrics"]["wa"]), _num(r["metrics"]["wf1"])) for r in runs])]
    per_class = summary.get("per_class", {})
    if per_class:
        def cell(c: str, k: str) -> str:
            v = per_class[c].get(k)
            return _interval(v) if isinstance(v, dict) else _num(v)

        parts += ["<h2>Per class</h2>", _table(
            ("class", "precision", "recall", "F1"),
            [(_e(c), cell(c, "precision"), cell(c, "recall"), cell(c, "f1")) for c in classes if c in per_class])]
    if runs and classes:
        total = [[0] * len(classes) for _ in classes]
        for r in runs:
            for i, row in enumerate(r["metrics"]["confusion_matrix"]):
                for j, v in enumerate(row):
                    total[i][j] += v
        rows = [[f"<span class=hl>{_e(c)}</span>"] + [f"<span class=hl>{v}</span>" if i == j else str(v)
                for j, v in enumerate(total[i])] for i, c in enumerate(classes)]
        parts += ["<h2>Confusion matrix</h2>",
                  f"<p class=sub>Test clips of all {len(runs)} run(s); rows: true class, columns: predicted.</p>",
                  _table(("true \\ predicted", *classes), rows, "cm")]
    figures = [
        _figure(directory / "confusion.png", "Confusion matrix (normalised by true class)"),
        _figure(directory / "curves.png", "Learning curves: training loss and validation score per epoch"),
        _figure(directory / "modality_weights.png", "Mean modality weight by true class"),
    ]
    parts += ["<h2>Figures</h2>", "<div class=figs>" + "".join(figures) + "</div>"]
    weights = directory / "modality_weights.json"
    if weights.is_file():
        w = json.loads(weights.read_text())
        parts += ["<h2>Modality attention weights</h2>",
                  "<p class=sub>Mean weight the head gives each modality, by true class (test clips).</p>",
                  _table(("class", *w["modalities"]),
                         [(_e(c), *(_num(x) for x in v)) for c, v in w["mean_by_class"].items()])]
    leak = metrics.get("leakage", {})
    overlap = leak.get("overlap", {})
    if overlap:
        ok = overlap.get("ok")
        parts += ["<h2>Leakage checks</h2>",
                  f"<p class='{'yes' if ok else 'warn'}'>{'no overlap between training and test' if ok else 'PROBLEMS'}"
                  f"</p>" + ("".join(f"<p class=warn>{_e(p)}</p>" for p in overlap.get("problems", [])))]
    if config:
        shown = {k: v for k, v in config.items() if v not in (None, {}, [], "")}
        parts += ["<h2>Training configuration</h2>",
                  _kv((_e(k), f"<code>{_e(json.dumps(v))}</code>") for k, v in shown.items())]
    return "".join(parts)


def _compare_body(directory: Path) -> tuple[str, dict[str, Any]]:
    with open(directory / "compare.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    keys = [("ua", "UA"), ("f1_weighted", "WF1"), ("accuracy", "Accuracy"), ("f1_macro", "F1 macro")]

    def cell(r: dict[str, str], k: str) -> str:
        return (f"{float(r[k + '_mean']):.3f} <span class=sub>[{float(r[k + '_ci_low']):.3f}, "
                f"{float(r[k + '_ci_high']):.3f}]</span>")

    parts = ["<h2>Test metrics per method</h2>",
             "<p class=sub>Every method saw the same splits and seeds; mean and 95% interval over runs.</p>",
             _table(("method", "modalities", "runs", *(label for _, label in keys)),
                    [(_e(r["name"]), _e(r["modalities"]), r["runs"], *(cell(r, k) for k, _ in keys)) for r in rows])]
    sig = directory / "significance.json"
    if sig.is_file():
        pairs = json.loads(sig.read_text())
        if pairs:
            table_rows = []
            for p in pairs:
                ua = p["ua"]
                table_rows.append((
                    _e(p["a"]), _e(p["b"]), p["n_runs"],
                    f"{100 * ua['mean_difference']:+.1f} <span class=sub>[{100 * ua['ci'][0]:+.1f}, "
                    f"{100 * ua['ci'][1]:+.1f}]</span>",
                    _num(ua.get("t_p_holm")), _num(ua.get("wilcoxon_p")),
                    "<span class=yes>yes</span>" if ua.get("significant") else "no",
                    f"{p.get('mcnemar_significant_runs', 0)} of {len(p.get('mcnemar', []))}"))
            parts += ["<h2>Is the difference real?</h2>",
                      "<p class=sub>Paired over shared runs: UA difference A - B in points with its 95% t-interval, "
                      "paired t-test p (Holm-adjusted over the pairs), Wilcoxon p, and the runs where McNemar's "
                      "exact test finds the per-clip predictions differ.</p>",
                      _table(("A", "B", "runs", "UA A - B", "t p (Holm)", "Wilcoxon p", "significant",
                              "McNemar"), table_rows)]
    figure = _figure(directory / "compare.png", "Test scores per method: mean and 95% interval over runs")
    parts += ["<h2>Figure</h2>", f"<div class=figs>{figure}</div>"]
    first = next(iter(sorted((directory / "runs").glob("*/metrics.json"))), None)
    metrics = json.loads(first.read_text()) if first else {}
    links = "".join(f"<li><a href='runs/{_e(p.parent.name)}/report.html'>{_e(p.parent.name)}</a></li>"
                    for p in sorted((directory / "runs").glob("*/metrics.json")))
    parts += [f"<h2>Runs</h2><ul>{links}</ul>"]
    return "".join(parts), metrics


def _page(title: str, subtitle: str, body: str) -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport "
            f"content='width=device-width,initial-scale=1'><title>{_e(title)}</title><style>{CSS}</style></head>"
            f"<body><h1>{_e(title)}</h1><p class=sub>{subtitle}</p>{body}</body></html>\n")


def write_report(directory: str | Path) -> Path:
    """Write ``directory/report.html`` for a run directory (``emo fuse``) or a comparison (``emo compare``, whose
    runs get their own pages); returns its path. :class:`UsageError` for a directory that is neither."""
    d = Path(directory)
    if (d / "metrics.json").is_file():
        metrics = json.loads((d / "metrics.json").read_text())
        title = f"emo fuse: {metrics.get('method', '?')}"
        sub = _e(metrics.get("store", {}).get("location", ""))
        page = _page(title, sub, _run_body(d, metrics) + _provenance(metrics, d))
    elif (d / "compare.csv").is_file():
        for run in sorted((d / "runs").glob("*/metrics.json")):
            write_report(run.parent)
        body, metrics = _compare_body(d)
        sub = _e(metrics.get("store", {}).get("location", ""))
        page = _page("emo compare", sub, body + (_provenance(metrics, d) if metrics else ""))
    else:
        raise UsageError(f"{d} is not a run directory (no metrics.json) nor a comparison (no compare.csv)")
    out = d / "report.html"
    out.write_text(page)
    return out
