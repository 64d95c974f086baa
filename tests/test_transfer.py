"""Backbone transfer: every dense model starts from a pretrained PVT classification or backbone folder, exactly, and
nothing is re-initialised or dropped silently."""

import json
from pathlib import Path

import pytest
import torch
from conftest import convert, tiny_config
from safetensors.torch import load_file, save_file
from tiny_heads import SMALL_DETR, detection_model, mask2former_model, segmentation_model, tiny_detector

from pvt_hf import (
    PvtBackbone,
    PvtConfig,
    PvtDetrConfig,
    PvtForImageClassification,
    PvtForObjectDetection,
    PvtForSemanticSegmentation,
    PvtSegmentationConfig,
)
from pvt_hf.transfer import BackboneTransferError, config_with_source_backbone, find_backbone, load_pretrained_backbone

DENSE_MODELS = {
    "semantic_fpn": lambda family: segmentation_model("semantic_fpn", family),
    "upernet": lambda family: segmentation_model("upernet", family),
    "detr": lambda family: detection_model("detr", family),
    "deformable_detr": lambda family: detection_model("deformable", family),
    "mask2former": mask2former_model,
    "retinanet": lambda family: tiny_detector("retinanet", family),
    "mask_rcnn": lambda family: tiny_detector("mask-rcnn", family),
}


def save_source(folder: Path, kind: str, family: str, seed: int = 1) -> tuple[str, dict]:
    """A classification or backbone folder of `family`'s tiny config; returns it and its trunk's tensors by backbone
    name."""
    torch.manual_seed(seed)
    config = tiny_config(family)
    model = (
        PvtForImageClassification(config)
        if kind == "classification"
        else PvtBackbone(tiny_config(family, num_labels=0))
    )
    model.save_pretrained(folder)
    trunk = model.pvt if kind == "classification" else model
    return str(folder), {k: v.clone() for k, v in trunk.state_dict().items() if k.startswith("encoder.")}


@pytest.mark.parametrize("kind", ["classification", "backbone"])
@pytest.mark.parametrize("family", ["v1", "v2"])
@pytest.mark.parametrize("dense", list(DENSE_MODELS))
def test_every_dense_model_takes_the_source_trunk_exactly(tmp_path, dense, family, kind):
    folder, expected = save_source(tmp_path / "source", kind, family)
    torch.manual_seed(0)
    model = DENSE_MODELS[dense](family)
    prefix, backbone = find_backbone(model)
    heads_before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith(prefix + ".")}
    assert any(not torch.equal(v, expected[k]) for k, v in backbone.state_dict().items())  # the test can fail

    report = load_pretrained_backbone(model, folder)

    weights = backbone.state_dict()
    assert sorted(weights) == sorted(expected)
    assert all(torch.equal(weights[k], expected[k]) for k in expected)
    assert sorted(report["loaded"]) == sorted(f"{prefix}.{k}" for k in expected)
    heads_after = {k: v for k, v in model.state_dict().items() if not k.startswith(prefix + ".")}
    assert heads_after.keys() == heads_before.keys()
    assert all(torch.equal(heads_after[k], heads_before[k]) for k in heads_before)
    if kind == "backbone":
        assert report["unused_in_source"] == []
    else:  # the classifier, and v1's class token and final norm, are reported, not dropped silently
        v1_extras = ["pvt.cls_token", "pvt.norm.bias", "pvt.norm.weight"] if family == "v1" else []
        assert report["unused_in_source"] == sorted(["classifier.bias", "classifier.weight", *v1_extras])


@pytest.mark.parametrize(
    "source_overrides, target_family, fields",
    [
        (dict(depths=[1, 1, 1, 1]), "v2", "depths"),
        (dict(sr_ratios=[4, 2, 1, 1]), "v2", "sr_ratios"),
        (dict(), "v2-li", "linear_sra"),
        (dict(), "v1", "overlapping_patch_embed, conv_ffn, absolute_pos_embed, pooling, stage_norms, image_size"),
    ],
)
def test_a_different_architecture_is_refused_naming_the_fields(tmp_path, source_overrides, target_family, fields):
    PvtBackbone(tiny_config("v2", num_labels=0, **source_overrides)).save_pretrained(tmp_path)
    model = segmentation_model("semantic_fpn", target_family)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(BackboneTransferError, match=f"differs from the target backbone's in {fields} "):
        load_pretrained_backbone(model, str(tmp_path))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_a_backbone_saved_before_the_per_norm_eps_fields_transfers(tmp_path):
    """A config.json of one eps (written before the patch-embedding / spatial-reduction eps fields) holds the same
    tensors as today's preset: the trunk transfers, not refused on the eps."""
    PvtBackbone(tiny_config("v2", num_labels=0)).save_pretrained(tmp_path)
    config_file = tmp_path / "config.json"
    config = json.loads(config_file.read_text())
    del config["patch_embed_layer_norm_eps"], config["spatial_reduction_layer_norm_eps"]
    config_file.write_text(json.dumps(config))
    report = load_pretrained_backbone(segmentation_model("semantic_fpn", "v2"), str(tmp_path))
    assert report["loaded"]


def test_a_tensor_missing_from_the_source_is_an_error_not_a_random_init(tmp_path):
    folder, _ = save_source(tmp_path, "backbone", "v2")
    weights = load_file(tmp_path / "model.safetensors")
    del weights["encoder.stages.2.blocks.1.mlp.fc2.weight"]
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    model = detection_model("deformable", "v2")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(BackboneTransferError, match=r"missing \['encoder.stages.2.blocks.1.mlp.fc2.weight'\]"):
        load_pretrained_backbone(model, folder)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_sources_that_are_not_a_pvt_trunk_are_refused_clearly(tmp_path):
    model = segmentation_model("semantic_fpn", "v2")
    segmentation_model("semantic_fpn", "v2").save_pretrained(tmp_path / "dense")
    with pytest.raises(
        BackboneTransferError, match="'pvt_hf_segmentation' model, not a PVT classification or backbone"
    ):
        load_pretrained_backbone(model, str(tmp_path / "dense"))
    with pytest.raises(BackboneTransferError, match="offline: download it first"):  # HF_HUB_OFFLINE=1 in the tests
        load_pretrained_backbone(model, "some-org/pvt-v2-b0-not-cached")
    with pytest.raises(BackboneTransferError, match="holds 0 PVT backbones"):
        load_pretrained_backbone(torch.nn.Linear(2, 2), str(tmp_path / "dense"))


def test_a_hub_id_resolves_through_the_hub_cache_with_hub_kwargs(tmp_path):
    """The Hub code path (transformers' cached_file), served offline by a cache laid out as huggingface_hub
    writes it."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = tmp_path / "cache" / "models--my-org--pvt-tiny-v2" / "snapshots" / commit
    _, expected = save_source(snapshot, "classification", "v2")
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text(commit)
    model = mask2former_model("v2")
    load_pretrained_backbone(model, "my-org/pvt-tiny-v2", cache_dir=str(tmp_path / "cache"), revision="main")
    weights = find_backbone(model)[1].state_dict()
    assert all(torch.equal(weights[k], expected[k]) for k in expected)


def test_a_preset_head_takes_the_source_backbones_architecture(tmp_path):
    """e.g. `pvt-small-detr-coco` on a PVT classification folder: the head's config keeps its own settings and output
    stages, the backbone is the source's."""
    folder, expected = save_source(tmp_path, "classification", "v1")
    config = PvtDetrConfig.from_preset("pvt-small-detr-coco", **SMALL_DETR)
    config.backbone_config.drop_path_rate = 0.1
    config = config_with_source_backbone(config, folder)
    backbone = config.backbone_config
    assert backbone.depths == tiny_config("v1").depths and backbone.hidden_sizes == tiny_config("v1").hidden_sizes
    assert backbone.out_features == ["stage4"] and backbone.drop_path_rate == 0.1 and backbone.num_labels == 0
    model = PvtForObjectDetection(config)
    load_pretrained_backbone(model, folder)
    weights = find_backbone(model)[1].state_dict()
    assert all(torch.equal(weights[k], expected[k]) for k in expected)
    model.save_pretrained(tmp_path / "detr")  # the adapted config serialises and reloads
    reloaded = find_backbone(PvtForObjectDetection.from_pretrained(tmp_path / "detr"))[1].state_dict()
    assert all(torch.equal(reloaded[k], expected[k]) for k in expected)


def test_the_converters_mm_backbone_folder_starts_a_preset_head(tmp_path):
    """An mmsegmentation/mmdetection checkpoint -> `convert_pvt_checkpoint.py --task backbone` -> Semantic FPN."""
    from test_conversion import random_model, write_checkpoint

    source = random_model(PvtConfig.from_preset("pvt-v2-b0"))
    checkpoint = write_checkpoint(source, "mm-state_dict", tmp_path)
    assert convert("official", checkpoint, tmp_path / "b0", "--task", "backbone") == 0
    model = PvtForSemanticSegmentation(PvtSegmentationConfig.from_preset("pvt-v2-b0-semantic-fpn-ade20k"))
    report = load_pretrained_backbone(model, str(tmp_path / "b0"))
    expected = {k: v for k, v in source.pvt.state_dict().items() if k.startswith("encoder.")}
    weights = model.backbone.state_dict()
    assert weights.keys() == expected.keys() and all(torch.equal(weights[k], expected[k]) for k in expected)
    assert report["unused_in_source"] == [] and len(report["loaded"]) == len(expected)


def test_scripts_backbone_argument_starts_a_preset_from_an_imagenet_folder(tmp_path):
    """`--backbone_name_or_path` as the training scripts use it (training.build_model): the paper's recipe, a preset
    head on an ImageNet-pretrained PVT folder."""
    from argparse import Namespace

    from transformers import AutoModelForSemanticSegmentation

    from pvt_hf import SEGMENTATION_PRESETS, training

    torch.manual_seed(1)
    source = PvtForImageClassification(PvtConfig.from_preset("pvt-v2-b0"))
    source.save_pretrained(tmp_path / "pvt-v2-b0")
    args = Namespace(
        model_name_or_path="pvt-v2-b0-semantic-fpn-ade20k",
        backbone_name_or_path=str(tmp_path / "pvt-v2-b0"),
        drop_path_rate=0.1,
        cache_dir=None,
        hub_token=None,
        ignore_mismatched_sizes=False,
    )
    id2label = {0: "road", 1: "car"}
    model = training.build_model(
        args, id2label, AutoModelForSemanticSegmentation, SEGMENTATION_PRESETS, PvtSegmentationConfig.from_preset
    )
    expected = {k: v for k, v in source.pvt.state_dict().items() if k.startswith("encoder.")}
    weights = model.backbone.state_dict()
    assert weights.keys() == expected.keys() and all(torch.equal(weights[k], expected[k]) for k in expected)
    assert model.config.id2label == id2label and model.config.backbone_config.drop_path_rate == 0.1
