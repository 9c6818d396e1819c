"""What the worker processes of emo's embedded cluster load: the models' libraries, never triton."""

from __future__ import annotations

import sys

from emo.pipeline.runner import ClusterOptions, dask_client


def _load_a_backbone() -> dict[str, object]:
    import torch
    import torchvision  # imports torch._dynamo, which asks whether triton is installed

    features = torchvision.models.resnet18(weights=None).eval()(torch.zeros(1, 3, 64, 64))
    return {"triton": "triton" in sys.modules and sys.modules["triton"] is not None, "shape": list(features.shape)}


def test_workers_run_the_models_without_loading_triton() -> None:
    # triton compiles torch.compile's GPU kernels, which no stage of emo runs; loading it cost each worker 85 MB
    with dask_client(ClusterOptions(workers=1, dashboard_address=None)) as client:
        (seen,) = client.run(_load_a_backbone).values()
    assert seen == {"triton": False, "shape": [1, 1000]}
