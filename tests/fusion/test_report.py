"""report.html: emo fuse and emo compare write one self-contained page, emo report rebuilds it, and a real headless
Chromium renders it without console errors with every figure loaded. The screenshots are kept under
build/test-artifacts/ for a person to look at."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from browser import chromium, file_url, visit
from conftest import run_emo
from test_train import CLASSES, synthetic_store

ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts"
IMAGES = "Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt])"
needs_chromium = pytest.mark.skipif(chromium() is None, reason="no Chromium (.ci/run installs Debian's chromium)")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_store(tmp_path_factory.mktemp("report") / "synthetic.zarr")


def self_contained(page: str) -> None:
    """Nothing is fetched: no http(s) URL in any src/href, no external stylesheet or script."""
    assert not re.search(r"""(src|href)=['"]?(https?:)?//""", page)
    assert "<script" not in page and "<link" not in page


@pytest.fixture(scope="module")
def run(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("report-run") / "run"
    proc = run_emo("fuse", "--store", str(store), "--method", "attention", "--epochs", "10", "--seeds", "2",
                   "--split", "speaker", "-o", str(run))
    assert proc.returncode == 0, proc.stderr
    return run


def test_fuse_writes_a_self_contained_report_and_emo_report_rebuilds_it(run: Path) -> None:
    page = (run / "report.html").read_text()
    self_contained(page)
    for text in ("Test metrics", "UA (macro recall)", "Per class", "Confusion matrix", "Learning curves",
                 "Modality attention weights", "Provenance", "store config hash", "fuse-config.toml",
                 "model.safetensors, sha256", *CLASSES):
        assert text in page, text
    assert re.search(r"0\.\d{3} <span class=sub>\[-?\d\.\d{3}, \d\.\d{3}\]", page)  # means with intervals
    # emo report rebuilds the same page
    (run / "report.html").unlink()
    again = run_emo("report", str(run))
    assert again.returncode == 0, again.stderr
    assert (run / "report.html").read_text() == page


@needs_chromium
def test_the_run_report_renders_in_chromium(run: Path) -> None:
    result = visit(file_url(run / "report.html"), IMAGES)
    assert result.errors == []
    assert len(result.value) == 3 and all(done and width > 0 for done, width, _ in result.value), result.value
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "report-fuse.png").write_bytes(result.screenshot)
    assert result.screenshot.startswith(b"\x89PNG")


@needs_chromium
def test_compare_report_has_the_significance_table_and_run_pages(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    proc = run_emo("compare", "--store", str(store), "--methods", "early,late", "--epochs", "8", "--seeds", "3",
                   "--split", "speaker", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    page = (out / "report.html").read_text()
    self_contained(page)
    assert "Is the difference real?" in page and "Holm" in page and "McNemar" in page
    for name in ("early", "late"):
        assert f"href='runs/{name}/report.html'" in page and (out / "runs" / name / "report.html").is_file()
    result = visit(file_url(out / "report.html"), IMAGES)
    assert result.errors == [] and result.value and all(done and width > 0 for done, width, _ in result.value)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "report-compare.png").write_bytes(result.screenshot)


def test_report_refuses_a_directory_without_results(tmp_path: Path) -> None:
    proc = run_emo("report", str(tmp_path))
    assert proc.returncode == 2 and "not a run directory" in proc.stderr
