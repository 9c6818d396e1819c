"""The embedded cluster's workers keep their scratch directories in a workspace of the run's own."""

from __future__ import annotations

from pathlib import Path

import dask

from emo.pipeline.runner import ClusterOptions, dask_client


def _local_directory(dask_worker) -> str:  # noqa: ANN001 - Dask passes its Worker by this parameter name
    return dask_worker.local_directory


def test_workers_scratch_lives_and_ends_with_the_run(tmp_path: Path) -> None:
    # Dask's shared default (<tmp>/dask-scratch-space) lets workers of other processes purge a killed worker's
    # directory while its nanny removes it too (an ERROR for the loser): each run gets its own workspace
    options = ClusterOptions(workers=1, dashboard_address=None)
    with dask.config.set({"temporary-directory": str(tmp_path)}), dask_client(options) as client:
        (local,) = (Path(d) for d in client.run(_local_directory).values())
        workspace = local.parent.parent
        assert workspace.parent == tmp_path and workspace.name.startswith("emo-dask-"), local
        assert local.is_dir()
    assert not workspace.exists()
    # the shared default holds at most the lock files of the scheduler's workspace, never a worker's directory
    assert [p for p in (tmp_path / "dask-scratch-space").glob("*") if p.is_dir()] == []
