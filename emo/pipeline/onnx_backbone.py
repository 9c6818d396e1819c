"""A visual backbone run by ONNX Runtime on a CPU (``--visual-runtime onnxruntime``).

When a worker loads the backbone, its torch module (weights loaded) is exported to an ONNX graph in memory and
handed to ONNX Runtime's CPU provider. No file is written: the graph lives as long as the process, so no cache
can go stale or be swapped, and ONNX is protobuf (no pickle). For EfficientNet-Lite0 this takes 2.9x less CPU
per face than torch at emo's CPU batch of 8 (3.2x at 32), with embeddings equal to torch's fp32 ones to cosine
0.99999 (``benchmarks/backbone_numerics.py``); every worker checks that again at load
(:meth:`VisualModel.check_numerics`).

The export uses torch.onnx's TorchScript exporter (``dynamo=False``): about 1.3 s of CPU and no memory peak per
worker for EfficientNet-Lite0, against 9 s and +0.3 GB for the torch.export-based one. torch has deprecated it;
when a torch release drops it, this module moves to ``dynamo=True`` with an on-disk cache of the graph.
"""

from __future__ import annotations

import io
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from emo.errors import MissingModelError
from emo.pipeline.backbones import package_version

if TYPE_CHECKING:
    from torch import nn

__all__ = ["OPSET", "OnnxBackbone", "export_graph", "onnx_numerics", "require_onnx"]

#: ONNX opset of the exported graph (supported by every onnxruntime >= 1.12)
OPSET = 17
_INPUT, _OUTPUT = "x", "y"


def require_onnx() -> None:
    """Raise :class:`MissingModelError` unless onnxruntime and onnx are installed (looked up, not imported)."""
    missing = [dist for dist in ("onnxruntime", "onnx") if package_version(dist) is None]
    if missing:
        raise MissingModelError(
            f"--visual-runtime onnxruntime needs {' and '.join(missing)} (pip install onnxruntime onnx; both are "
            "emo dependencies), or run with --visual-runtime torch"
        )


def export_graph(module: nn.Module, input_size: int) -> bytes:
    """The serialized ONNX graph of ``module`` (eval mode, weights loaded) for [batch, 3, size, size] float32
    input, batch dynamic."""
    import torch

    require_onnx()
    example = torch.zeros(1, 3, input_size, input_size)
    buf = io.BytesIO()
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        # the exporter's own notices: its deprecation (see the module docstring) and Slice ops it leaves unfolded
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message="The feature will be removed", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1", category=UserWarning)
        torch.onnx.export(
            module,
            (example,),
            buf,
            input_names=[_INPUT],
            output_names=[_OUTPUT],
            dynamic_axes={_INPUT: {0: "batch"}, _OUTPUT: {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    return buf.getvalue()


class OnnxBackbone:
    """ONNX Runtime session over the exported graph of a backbone: float32 NCHW batches in, features out."""

    def __init__(self, module: nn.Module, input_size: int) -> None:
        import onnxruntime as ort
        import torch

        graph = export_graph(module, input_size)
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # the worker's thread budget
        options.inter_op_num_threads = 1
        # the arena kept ~200 MB after one batch of 32 (measured); without it a batch allocates what it needs
        options.enable_cpu_mem_arena = False
        # idle pool threads would otherwise spin and take CPU from MTCNN and the audio features
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only
        self._session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Features [B, ...] float32 of the preprocessed batch ``x`` [B, 3, size, size]."""
        return self._session.run([_OUTPUT], {_INPUT: np.ascontiguousarray(x, dtype=np.float32)})[0]


def onnx_numerics() -> dict[str, Any]:
    """What the provenance records of this runtime."""
    return {
        "runtime": "onnxruntime",
        "devices": "CPU workers; a CUDA worker runs the backbone in torch, fp32",
        "onnxruntime": package_version("onnxruntime"),
        "provider": "CPUExecutionProvider",
        "graph": f"exported at load by torch.onnx (TorchScript exporter, opset {OPSET}) from the weights above",
    }
