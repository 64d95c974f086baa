"""ONNX export (pvt_hf.onnx_export): one graph, dynamic batch / height / width, equal to PyTorch under onnxruntime."""

import pytest
import torch
from conftest import FAMILIES, tiny_config

from pvt_hf import PvtBackbone, PvtForImageClassification
from pvt_hf.onnx_export import AdaptiveAvgPool2dAsMatmul, export_onnx, exportable

pytestmark = pytest.mark.slow  # ONNX exports take 5-10 s each


pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")

# torch.export traces sizes symbolically, ~1 s per module: two stages keep each export to a few seconds and still hold
# every switch of the family (v1: position tables + class token, v2: overlapping patches, SR conv, CFFN, v2-li: pool).
TWO_STAGES = dict(
    depths=[1, 1],
    patch_sizes=[4, 2],
    hidden_sizes=[16, 32],
    num_attention_heads=[1, 2],
    sr_ratios=[2, 1],
    mlp_ratios=[2, 2],
    out_features=["stage1", "stage2"],
)
# None is the traced 224 x 224 (where v1 would not need its position interpolation); at 40 x 56 the last grid is
# smaller than v2-li's 7 x 7 pool.
SIZES = [(2, 64, 96), (1, 96, 64), (1, 40, 56)]


@pytest.mark.parametrize("task", ["classification", "backbone"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_export_has_dynamic_batch_height_width(tmp_path, family, task):
    config = tiny_config(family, **TWO_STAGES)
    model = (PvtForImageClassification if task == "classification" else PvtBackbone)(config).eval()
    names = ["logits"] if task == "classification" else ["feature_map_0", "feature_map_1"]
    export = export_onnx(model, tmp_path / "model.onnx")  # traced at 224 x 224
    assert export.exporter == "dynamo" and export.dynamic and export.output_names == names
    session = ort.InferenceSession(str(export.path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == names
    for batch, height, width in SIZES:
        pixels = torch.randn(batch, 3, height, width)
        with torch.no_grad():
            out = model(pixels)
        expected = [out.logits] if task == "classification" else list(out.feature_maps)
        actual = session.run(None, {"pixel_values": pixels.numpy()})
        for got, want in zip(actual, expected, strict=True):
            assert got.shape == tuple(want.shape)
            torch.testing.assert_close(torch.from_numpy(got), want, atol=1e-4, rtol=0)


def test_export_swaps_adaptive_pooling_only_while_exporting():
    model = PvtForImageClassification(tiny_config("v2-li"))
    pools = [m for m in model.modules() if isinstance(m, torch.nn.AdaptiveAvgPool2d)]
    assert pools
    with exportable(model):
        assert not any(isinstance(m, torch.nn.AdaptiveAvgPool2d) for m in model.modules())
    assert [m for m in model.modules() if isinstance(m, torch.nn.AdaptiveAvgPool2d)] == pools


@pytest.mark.parametrize("size", [(3, 5), (7, 7), (13, 22), (50, 38)])
def test_matmul_pooling_equals_adaptive_average_pooling(size):
    feature_map = torch.randn(2, 4, *size)
    expected = torch.nn.AdaptiveAvgPool2d(7)(feature_map)
    torch.testing.assert_close(AdaptiveAvgPool2dAsMatmul(7)(feature_map), expected, atol=1e-6, rtol=0)


def test_export_refuses_other_models(tmp_path):
    with pytest.raises(TypeError, match="PvtForImageClassification or PvtBackbone"):
        export_onnx(torch.nn.Linear(2, 2), tmp_path / "x.onnx")


def test_falls_back_to_a_static_torchscript_graph(tmp_path, monkeypatch):
    real_export = torch.onnx.export

    def dynamo_fails(*args, dynamo=True, **kwargs):
        if dynamo:
            raise RuntimeError("simulated torch.export failure")
        return real_export(*args, dynamo=False, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", dynamo_fails)
    model = PvtForImageClassification(tiny_config("v1", **TWO_STAGES)).train()
    with pytest.warns(UserWarning, match="fell back to the TorchScript exporter"):
        export = export_onnx(model, tmp_path / "model.onnx", height=64, width=96, batch_size=1)
    assert export.exporter == "torchscript" and not export.dynamic and model.training
    pixels = torch.randn(1, 3, 64, 96)
    actual = ort.InferenceSession(str(export.path)).run(None, {"pixel_values": pixels.numpy()})[0]
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(actual), model.eval()(pixels).logits, atol=1e-4, rtol=0)
