"""ONNX export of `PvtForImageClassification` (output ``logits``) and `PvtBackbone` (``feature_map_0`` ...), with a
dynamic batch size, height and width.

The graph is captured with `torch.export` (``torch.onnx.export(..., dynamo=True)``), which traces sizes
symbolically, so one file serves every input size. Two details make that hold for every PVT variant:

- v1's position tables: the modeling code interpolates them whenever ``torch.compiler.is_exporting()``, also at
  the native grid, so the graph keeps the interpolation instead of specialising to the export size.
- v2-li's ``nn.AdaptiveAvgPool2d(7)``: torch decomposes adaptive pooling with branches on the input size (does 7
  divide it? how long is the longest bin?), so a graph traced at one size computes wrong bins, or fails, at others.
  During export those modules are swapped for `AdaptiveAvgPool2dAsMatmul`, the same pooling written with ops whose
  shapes stay symbolic.

The TorchScript exporter (``dynamo=False``) is only a fallback for static graphs: it records the modeling code's
Python-int shape arithmetic (``view(batch_size, seq_len, ...)``, ``expand(tokens.shape[0], ...)``) as constants, so
its graphs are valid for the export size only.
"""

import contextlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .modeling_pvt import PvtBackbone, PvtForImageClassification
from .reference import pvt_hf_outputs

DEFAULT_OPSET = 18


@dataclass
class OnnxExport:
    path: Path
    exporter: str  # "dynamo" or "torchscript"
    dynamic: bool  # whether batch, height and width are dynamic in the saved graph
    input_names: list[str]
    output_names: list[str]


class AdaptiveAvgPool2dAsMatmul(nn.Module):
    """`nn.AdaptiveAvgPool2d` as two averaging matrices, ``A_h @ x @ A_w^T``, built from aranges of the input size.

    Bin i of n inputs pooled to p outputs spans [floor(i n / p), ceil((i + 1) n / p)), PyTorch's definition, so the
    result equals the module's up to float rounding, for inputs larger or smaller than the output."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = nn.modules.utils._pair(output_size)

    @staticmethod
    def averaging_matrix(in_size, out_size: int, like: torch.Tensor) -> torch.Tensor:
        i = torch.arange(out_size, device=like.device).unsqueeze(1)
        n = torch.arange(in_size, device=like.device).unsqueeze(0)
        start = torch.div(i * in_size, out_size, rounding_mode="floor")
        end = torch.div((i + 1) * in_size + out_size - 1, out_size, rounding_mode="floor")
        mask = ((n >= start) & (n < end)).to(like.dtype)
        return mask / mask.sum(dim=1, keepdim=True)

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        rows = self.averaging_matrix(feature_map.shape[-2], self.output_size[0], feature_map)
        cols = self.averaging_matrix(feature_map.shape[-1], self.output_size[1], feature_map)
        return rows @ feature_map @ cols.transpose(0, 1)


@contextlib.contextmanager
def exportable(model: nn.Module):
    """`model` in eval mode, every `nn.AdaptiveAvgPool2d` swapped for `AdaptiveAvgPool2dAsMatmul`; restored after."""
    training = model.training
    model.eval()
    swapped = [
        (module, name, child)
        for module in model.modules()
        for name, child in module.named_children()
        if isinstance(child, nn.AdaptiveAvgPool2d)
    ]
    for module, name, child in swapped:
        setattr(module, name, AdaptiveAvgPool2dAsMatmul(child.output_size))
    try:
        yield model
    finally:
        for module, name, child in swapped:
            setattr(module, name, child)
        model.train(training)


def output_names(model: nn.Module) -> list[str]:
    if isinstance(model, PvtForImageClassification):
        return ["logits"]
    if isinstance(model, PvtBackbone):
        return [f"feature_map_{i}" for i in range(len(model.out_features))]
    raise TypeError(f"export_onnx takes a PvtForImageClassification or PvtBackbone, got {type(model).__name__}")


def export_onnx(
    model: PvtForImageClassification | PvtBackbone,
    path: str | Path,
    height: int = 224,
    width: int = 224,
    dynamic: bool = True,
    opset: int = DEFAULT_OPSET,
    batch_size: int = 1,
) -> OnnxExport:
    """Export `model` to `path` (in eval mode; restored after), traced at `height` x `width`.

    With `dynamic`, batch, height and width are free in the graph (any input the model itself accepts; traced with
    batch 2, as torch.export specialises size-1 dimensions); otherwise the graph takes (`batch_size`, C, `height`,
    `width`) only. If the torch.export-based exporter fails, falls back to the TorchScript exporter with a static
    graph and warns."""
    names = output_names(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    param = next(model.parameters())
    like = dict(device=param.device, dtype=param.dtype)
    channels = model.config.num_channels
    with exportable(model), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporters' deprecation and tracer warnings
        try:
            example = torch.randn(2 if dynamic else batch_size, channels, height, width, **like)
            _export(model, path, names, example, opset, dynamo=True, dynamic=dynamic)
            return OnnxExport(path, "dynamo", dynamic, ["pixel_values"], names)
        except Exception as error:  # noqa: BLE001 - any failure of this exporter: try the other one
            failure = f"{type(error).__name__}: {str(error)[:500]}"
        example = torch.randn(batch_size, channels, height, width, **like)
        _export(model, path, names, example, opset, dynamo=False, dynamic=False)
    warnings.warn(
        f"torch.export-based ONNX export failed ({failure}); fell back to the TorchScript exporter, whose graph is "
        f"fixed at input size {tuple(example.shape)}",
        stacklevel=2,
    )
    return OnnxExport(path, "torchscript", False, ["pixel_values"], names)


def _export(model, path, names, example, opset, dynamo, dynamic):
    dim = torch.export.Dim.DYNAMIC
    shapes = {"dynamic_shapes": {"pixel_values": {0: dim, 2: dim, 3: dim}}} if dynamic else {}
    with torch.no_grad():
        torch.onnx.export(
            pvt_hf_outputs(model),
            (example,),
            path,
            dynamo=dynamo,
            input_names=["pixel_values"],
            output_names=names,
            opset_version=opset,
            external_data=False,
            verbose=False,
            **shapes,
        )


__all__ = ["AdaptiveAvgPool2dAsMatmul", "OnnxExport", "export_onnx", "exportable"]
