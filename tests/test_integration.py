"""transformers integration: Auto classes, transformers' own heads on a PVT backbone, Hub artifacts, processor."""

import json

import numpy as np
import pytest
import torch
import transformers
from conftest import tiny_config
from PIL import Image
from tiny_heads import SMALL_DETR, detection_targets
from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification, pipeline

from pvt_hf import PvtBackbone, PvtConfig, PvtForImageClassification, PvtHfImageProcessor, PvtModel


def test_auto_classes_resolve_our_classes(tmp_path):
    config = tiny_config("v2")
    assert type(AutoConfig.for_model("pvt_hf")) is PvtConfig
    assert type(AutoModel.from_config(config)) is PvtModel
    assert type(AutoModelForImageClassification.from_config(config)) is PvtForImageClassification
    assert type(transformers.AutoBackbone.from_config(config)) is PvtBackbone
    PvtForImageClassification(config).save_pretrained(tmp_path)
    PvtHfImageProcessor().save_pretrained(tmp_path)
    assert type(AutoImageProcessor.from_pretrained(tmp_path)) is PvtHfImageProcessor
    assert type(AutoConfig.from_pretrained(tmp_path)) is PvtConfig
    # transformers' own pvt / pvt_v2 are untouched
    assert type(AutoConfig.for_model("pvt_v2")) is transformers.PvtV2Config


def test_backbone_loads_from_a_classification_checkpoint(tmp_path):
    classifier = PvtForImageClassification(tiny_config("v1")).eval()
    classifier.save_pretrained(tmp_path)
    # (AutoBackbone.from_pretrained itself asks the Hub whether a local folder is a repo in transformers 5.x, so it
    # fails offline for every model; the backbone class loads the folder directly.)
    backbone = PvtBackbone.from_pretrained(tmp_path, out_features=["stage1", "stage2", "stage3"]).eval()
    pixels = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = classifier.pvt(pixels, output_hidden_states=True).hidden_states
        actual = backbone(pixels).feature_maps
    for exp, act in zip(expected[:3], actual, strict=True):
        torch.testing.assert_close(act, exp)


# ------------------------------------------------------------- transformers' heads with a PVT backbone


def backbone_config(*stages):
    return tiny_config("v2", out_features=list(stages))


def build_head(name):
    if name == "detr":
        config = transformers.DetrConfig(
            backbone_config=backbone_config("stage4"), **SMALL_DETR, use_pretrained_backbone=False
        )
        return transformers.DetrForObjectDetection(config), dict(labels=detection_targets())
    if name == "deformable_detr":
        config = transformers.DeformableDetrConfig(
            backbone_config=backbone_config("stage2", "stage3", "stage4"),
            num_feature_levels=3,
            use_pretrained_backbone=False,
            **SMALL_DETR,
        )
        return transformers.DeformableDetrForObjectDetection(config), dict(labels=detection_targets())
    config = transformers.UperNetConfig(
        backbone_config=backbone_config("stage1", "stage2", "stage3", "stage4"),
        num_labels=5,
        hidden_size=32,
        auxiliary_channels=16,
        use_auxiliary_head=True,
    )
    return transformers.UperNetForSemanticSegmentation(config), dict(labels=torch.randint(0, 5, (2, 96, 128)))


@pytest.mark.parametrize("head", ["detr", "deformable_detr", "upernet"])  # Mask2Former: test_mask2former.py
def test_transformers_heads_train_on_a_pvt_backbone(head):
    torch.manual_seed(0)
    model, targets = build_head(head)
    backbones = [m for m in model.modules() if isinstance(m, PvtBackbone)]
    assert len(backbones) == 1
    out = model(pixel_values=torch.randn(2, 3, 96, 128), **targets)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for p in backbones[0].parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


# ------------------------------------------------------------- Hub artifacts


LOAD_FOLDER = """
    import json, sys
    import torch
    from transformers import AutoImageProcessor, AutoModel, AutoModelForImageClassification
    from transformers.dynamic_module_utils import get_class_from_dynamic_module
    folder, pixels = sys.argv[1], torch.load(sys.argv[2])
    model = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True).eval()
    with torch.no_grad():
        torch.save(model(pixels).logits, sys.argv[3])
    with open(folder + "/config.json") as f:
        backbone_class = get_class_from_dynamic_module(json.load(f)["auto_map"]["AutoBackbone"], folder)
    backbone = backbone_class.from_pretrained(folder, out_indices=[0, 3])
    base = AutoModel.from_pretrained(folder, trust_remote_code=True)
    processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
    print(json.dumps({
        "classes": [f"{type(m).__module__}.{type(m).__name__}" for m in (model, backbone, base, processor)],
        "feature_maps": len(backbone(pixels).feature_maps),
        "processed": list(processor(torch.zeros(3, 300, 400), return_tensors="pt").pixel_values.shape),
    }))
"""


def test_saved_folder_is_self_contained(tmp_path, family, fresh_python):
    folder = tmp_path / "model"
    model = PvtForImageClassification(tiny_config(family)).eval()
    model.save_pretrained(folder)
    PvtHfImageProcessor().save_pretrained(folder)
    files = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "modeling_pvt.py"} <= files
    assert {"configuration_pvt.py", "image_processing_pvt.py"} <= files
    auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModelForImageClassification"] == "modeling_pvt.PvtForImageClassification"
    assert auto_map["AutoBackbone"] == "modeling_pvt.PvtBackbone"
    pixels = torch.randn(2, 3, 96, 128)
    torch.save(pixels, tmp_path / "pixels.pt")
    clean = fresh_python(LOAD_FOLDER, folder, tmp_path / "pixels.pt", tmp_path / "logits.pt")
    modules, classes = zip(*(c.rsplit(".", 1) for c in clean["classes"]), strict=True)
    assert classes == ("PvtForImageClassification", "PvtBackbone", "PvtModel", "PvtHfImageProcessor")
    assert all(m.startswith("transformers_modules.") for m in modules), modules  # the folder's code, not pvt_hf
    assert clean["feature_maps"] == 2 and clean["processed"] == [1, 3, 224, 224]
    with torch.no_grad():
        assert torch.equal(torch.load(tmp_path / "logits.pt"), model(pixels).logits)


# ------------------------------------------------------------- image processor


def deit_eval_transform(image: Image.Image) -> np.ndarray:
    """The DeiT/PVT evaluation transform written directly with PIL and NumPy (an independent reference)."""
    image = image.convert("RGB")
    width, height = image.size
    short = min(width, height)
    size = (256, int(256 * height / width)) if width == short else (int(256 * width / height), 256)
    image = image.resize(size, Image.BICUBIC)
    left, top = (size[0] - 224) // 2, (size[1] - 224) // 2
    array = np.asarray(image.crop((left, top, left + 224, top + 224)), dtype=np.float32) / 255.0
    array = (array - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    return array.transpose(2, 0, 1).astype(np.float32)


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P", "CMYK"])
def test_processor_is_the_deit_eval_transform_for_every_image_mode(mode):
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (300, 401, 3), dtype=np.uint8)).convert(mode)
    pixels = PvtHfImageProcessor()(image, return_tensors="pt").pixel_values
    assert pixels.shape == (1, 3, 224, 224)
    np.testing.assert_allclose(pixels[0].numpy(), deit_eval_transform(image), atol=2e-2)


def test_processor_accepts_numpy_and_torch_batches():
    rng = np.random.default_rng(1)
    array = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    processor = PvtHfImageProcessor()
    from_pil = processor(Image.fromarray(array), return_tensors="pt").pixel_values
    from_numpy = processor(array, return_tensors="pt").pixel_values
    from_torch = processor(torch.from_numpy(array).permute(2, 0, 1), return_tensors="pt").pixel_values
    torch.testing.assert_close(from_numpy, from_pil)
    torch.testing.assert_close(from_torch, from_pil)
    gray = rng.integers(0, 255, (240, 320), dtype=np.uint8)
    batch = processor([array, gray], return_tensors="pt").pixel_values
    assert batch.shape == (2, 3, 224, 224)


def test_image_classification_pipeline_on_a_saved_folder(tmp_path):
    config = tiny_config(
        "v2", num_labels=3, id2label={0: "cat", 1: "dog", 2: "bird"}, label2id={"cat": 0, "dog": 1, "bird": 2}
    )
    PvtForImageClassification(config).save_pretrained(tmp_path)
    PvtHfImageProcessor().save_pretrained(tmp_path)
    classify = pipeline("image-classification", model=str(tmp_path))
    image = Image.fromarray(np.random.default_rng(2).integers(0, 255, (333, 517, 3), dtype=np.uint8))
    results = classify(image, top_k=3)
    assert sorted(r["label"] for r in results) == ["bird", "cat", "dog"]
    assert sum(r["score"] for r in results) == pytest.approx(1.0, abs=1e-4)
