"""Dense prediction: Semantic FPN / UperNet segmentation, DETR / Deformable DETR detection, processors, pipelines."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from tiny_heads import detection_model, detection_targets, segmentation_model
from transformers import pipeline

from pvt_hf import (
    DETECTION_PRESETS,
    PRESETS,
    SEGMENTATION_PRESETS,
    PvtDeformableDetrConfig,
    PvtDeformableDetrImageProcessor,
    PvtDetrConfig,
    PvtDetrImageProcessor,
    PvtForSemanticSegmentation,
    PvtSegmentationConfig,
    PvtSegmentationImageProcessor,
    count_macs,
    draw_detections,
    draw_segmentation,
)
from pvt_hf.conversion import ConversionError, convert_state_dict, pvt_hf_to_official
from pvt_hf.paper_numbers import SEMANTIC_FPN_ADE20K


def meta_semantic_fpn(backbone):
    with torch.device("meta"):
        return PvtForSemanticSegmentation(PvtSegmentationConfig.from_preset(f"{backbone}-semantic-fpn-ade20k"))


@pytest.mark.parametrize("backbone", SEMANTIC_FPN_ADE20K)
def test_semantic_fpn_parameters_match_the_papers(backbone):
    params = sum(p.numel() for p in meta_semantic_fpn(backbone).parameters()) / 1e6
    assert params == pytest.approx(SEMANTIC_FPN_ADE20K[backbone].params_m, abs=0.1)


@pytest.mark.parametrize("backbone", SEMANTIC_FPN_ADE20K)
def test_semantic_fpn_macs_at_512_match_the_v2_paper(backbone):
    macs = count_macs(meta_semantic_fpn(backbone), 512, 512) / 1e9
    assert macs == pytest.approx(SEMANTIC_FPN_ADE20K[backbone].gflops, rel=0.02)


def test_semantic_fpn_is_the_papers_head():
    model = meta_semantic_fpn("pvt-v2-b0")
    assert [c.conv.out_channels for c in model.neck.lateral_convs] == [256] * 4
    assert [c.conv.kernel_size for c in model.neck.fpn_convs] == [(3, 3)] * 4
    convs = [[m for m in head if hasattr(m, "conv")] for head in model.decode_head.scale_heads]
    assert [len(c) for c in convs] == [1, 1, 2, 3]  # one Conv3x3-BN-ReLU per 2x step to stride 4 (at least one)
    assert all(block.conv.out_channels == 128 and block.bn is not None for level in convs for block in level)
    upsamples = [sum(isinstance(m, torch.nn.Upsample) for m in head) for head in model.decode_head.scale_heads]
    assert upsamples == [0, 1, 2, 3]
    assert model.decode_head.dropout.p == 0.1 and model.decode_head.classifier.kernel_size == (1, 1)
    assert model.config.num_labels == 150 and model.config.id2label[0] == "wall"


# ------------------------------------------------------------- tiny models of every head


def train_step(model, **inputs):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    out = model(**inputs)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    optimizer.step()
    changed = [n for n, p in model.named_parameters() if not torch.equal(before[n], p)]
    assert any(n.startswith("backbone.") or ".backbone." in n for n in changed)
    return out


@pytest.mark.parametrize("head", ["semantic_fpn", "upernet"])
@pytest.mark.parametrize("family", ["v1", "v2-li"])
def test_segmentation_trains_and_predicts_at_stride_4(head, family):
    torch.manual_seed(0)
    model = segmentation_model(head, family)
    pixels = torch.randn(2, 3, 100, 130)
    out = train_step(model, pixel_values=pixels, labels=torch.randint(0, 5, (2, 100, 130)))
    first_stage = model.backbone(pixels).feature_maps[0].shape[-2:]
    assert out.logits.shape == (2, 5, *first_stage)


def test_segmentation_loss_is_cross_entropy_at_label_resolution():
    model = segmentation_model("semantic_fpn", use_auxiliary_head=False).eval()
    pixels, labels = torch.randn(2, 3, 64, 96), torch.randint(0, 5, (2, 64, 96))
    labels[0, :10] = 255  # ADE20K's "other" after reduce-labels: ignored
    out = model(pixel_values=pixels, labels=labels)
    upsampled = F.interpolate(out.logits, size=(64, 96), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out.loss, F.cross_entropy(upsampled, labels, ignore_index=255))
    with_aux = segmentation_model("semantic_fpn").eval()
    with_aux.load_state_dict(model.state_dict(), strict=False)
    aux_logits = with_aux.auxiliary_head(list(with_aux.backbone(pixels).feature_maps))
    aux = F.cross_entropy(F.interpolate(aux_logits, size=(64, 96), mode="bilinear"), labels, ignore_index=255)
    torch.testing.assert_close(with_aux(pixel_values=pixels, labels=labels).loss, out.loss + 0.4 * aux)


def test_segmentation_rejects_bad_labels_clearly():
    model = segmentation_model("semantic_fpn")
    pixels = torch.randn(1, 3, 64, 64)
    with pytest.raises(ValueError, match=r"label maps of shape \(batch, height, width\)"):
        model(pixel_values=pixels, labels=torch.zeros(1, 32, 32, dtype=torch.long))
    with pytest.raises(ValueError, match=r"class ids outside \[0, 5\)"):
        model(pixel_values=pixels, labels=torch.full((1, 64, 64), 7))
    with pytest.raises(ValueError, match="at least 32x32"):
        model(pixel_values=torch.randn(1, 3, 16, 64))


@pytest.mark.parametrize("kind, family", [("detr", "v1"), ("detr", "v2"), ("deformable", "v2-li")])
def test_detection_trains_on_images_with_and_without_objects(kind, family):
    torch.manual_seed(0)
    model = detection_model(kind, family)
    out = train_step(model, pixel_values=torch.randn(2, 3, 96, 128), labels=detection_targets())
    assert out.logits.shape[:2] == (2, 10) and out.pred_boxes.shape == (2, 10, 4)
    processor = PvtDeformableDetrImageProcessor() if kind == "deformable" else PvtDetrImageProcessor()
    results = processor.post_process_object_detection(out, threshold=0.0, target_sizes=[(96, 128)] * 2)
    assert results[0]["boxes"].shape[-1] == 4 and len(results[0]["scores"]) == len(results[0]["labels"])


def test_detection_rejects_class_ids_outside_num_labels():
    model = detection_model("detr")
    labels = [{"class_labels": torch.tensor([3]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]])}]
    with pytest.raises(ValueError, match=r"class_labels'\] holds ids outside \[0, 3\)"):
        model(pixel_values=torch.randn(1, 3, 64, 64), labels=labels)
    labels = [{"class_labels": torch.tensor([1]), "boxes": torch.tensor([0.5, 0.5, 0.2, 0.2])}]
    with pytest.raises(ValueError, match=r"must have shape \(1, 4\)"):
        model(pixel_values=torch.randn(1, 3, 64, 64), labels=labels)


def test_detr_defaults_are_the_papers_setup():
    config = PvtDetrConfig()
    backbone = config.backbone_config
    assert backbone.depths == [3, 4, 6, 3] and backbone.absolute_pos_embed and backbone.out_features == ["stage4"]
    assert (config.encoder_layers, config.decoder_layers, config.d_model, config.encoder_attention_heads) == (
        6,
        6,
        256,
        8,
    )
    assert (config.encoder_ffn_dim, config.decoder_ffn_dim, config.num_queries) == (2048, 2048, 100)
    assert (config.class_cost, config.bbox_cost, config.giou_cost) == (1, 5, 2)
    assert (config.bbox_loss_coefficient, config.giou_loss_coefficient, config.eos_coefficient) == (5, 2, 0.1)
    assert config.auxiliary_loss
    deformable = PvtDeformableDetrConfig.from_preset("pvt-v2-b2-deformable-detr-coco")
    assert deformable.backbone_config.out_features == ["stage2", "stage3", "stage4"] and deformable.num_queries == 300
    coco = PvtDetrConfig.from_preset("pvt-small-detr-coco")
    assert coco.num_labels == 80 and coco.id2label[0] == "person" and coco.id2label[79] == "toothbrush"


def test_head_presets_exist_for_every_backbone_and_unknown_ones_are_listed():
    assert len(SEGMENTATION_PRESETS) == 2 * len(PRESETS) and len(DETECTION_PRESETS) == 2 * len(PRESETS)
    with pytest.raises(ValueError, match="pvt-v2-b2-semantic-fpn-ade20k"):
        PvtSegmentationConfig.from_preset("pvt-v9-semantic-fpn-ade20k")
    with pytest.raises(ValueError, match="pvt-small-detr-coco"):
        PvtDetrConfig.from_preset("pvt-small-detr-voc")
    with pytest.raises(ValueError, match="decode_head must be 'semantic_fpn' or 'upernet'"):
        PvtSegmentationConfig(decode_head="deeplab")


def make_shapes_batch(count, size=64, seed=0):
    """Images with one or two bright rectangles on a dark background, and their DETR targets."""
    rng = np.random.default_rng(seed)
    pixels, targets = torch.zeros(count, 3, size, size), []
    for i in range(count):
        labels, boxes = [], []
        for _ in range(rng.integers(1, 3)):
            cls = int(rng.integers(0, 3))
            w, h = rng.integers(size // 5, size // 2, 2)
            x, y = rng.integers(0, size - w), rng.integers(0, size - h)
            pixels[i, cls, y : y + h, x : x + w] = 2.0
            labels.append(cls)
            boxes.append([(x + w / 2) / size, (y + h / 2) / size, w / size, h / size])
        targets.append({"class_labels": torch.tensor(labels), "boxes": torch.tensor(boxes, dtype=torch.float32)})
    return pixels, targets


@pytest.mark.slow
def test_tiny_detr_overfits_a_handful_of_images():
    torch.manual_seed(0)
    model = detection_model("detr", "v2", auxiliary_loss=False).train()
    pixels, targets = make_shapes_batch(4)
    # lr 1e-3: at 2e-3 this seed's loss oscillated (6.6 -> 4.6 after 300 steps once the official LayerNorm eps was in)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    losses = []
    for _ in range(300):  # about 15 s on 2 CPU cores
        loss = model(pixel_values=pixels, labels=targets).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:10]), losses[::20]


# ------------------------------------------------------------- processors


def test_detr_processor_any_mode_padding_and_targets():
    rng = np.random.default_rng(0)
    big = Image.fromarray(rng.integers(0, 255, (300, 401, 3), dtype=np.uint8))
    small = Image.fromarray(rng.integers(0, 255, (20, 30), dtype=np.uint8))  # grayscale, under 32 px
    annotations = [
        {
            "image_id": 1,
            "annotations": [
                {"bbox": [10, 10, 50, 60], "category_id": 2, "area": 3000},
                {"bbox": [390, 290, 40, 40], "category_id": 1, "area": 1600},  # partly outside: clipped
                {"bbox": [10, 10, 0, 20], "category_id": 0, "area": 0},  # zero width: dropped
            ],
        },
        {"image_id": 2, "annotations": []},  # no objects
    ]
    for mode in ("RGB", "L", "RGBA", "CMYK", "P"):
        out = PvtDetrImageProcessor()([big.convert(mode), small], annotations=annotations, return_tensors="pt")
        assert out.pixel_values.shape[:2] == (2, 3) and out.pixel_mask.shape == (2, *out.pixel_values.shape[-2:])
        # shorter side 800: 300x401 -> 800x1069, padded to the batch's 800x1200 (20x30 -> 800x1200)
        assert out.pixel_mask[0].sum() == 800 * 1069 and out.pixel_mask[1].all()
        assert out.labels[0]["class_labels"].tolist() == [2, 1] and out.labels[1]["class_labels"].numel() == 0
        cx, cy, w, h = out.labels[0]["boxes"][1].tolist()
        assert (cx + w / 2) <= 1.0 + 1e-6 and w == pytest.approx(11 * (800 / 300) / 1200, rel=1e-3)  # clipped to 11 px


def test_segmentation_processor_reduces_ade20k_labels_and_checks_sizes():
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (300, 401, 3), dtype=np.uint8)).convert("CMYK")
    label_map = np.zeros((300, 401), dtype=np.uint8)
    label_map[:, 200:] = 7
    out = PvtSegmentationImageProcessor(do_reduce_labels=True)(
        image, segmentation_maps=Image.fromarray(label_map), return_tensors="pt"
    )
    assert out.pixel_values.shape == (1, 3, 512, 512) and set(out.labels.unique().tolist()) == {6, 255}
    with pytest.raises(ValueError, match=r"segmentation_maps\[0\] is \(300, 400\)"):
        PvtSegmentationImageProcessor()(image, segmentation_maps=Image.fromarray(label_map[:, :400]))


def test_visualization_draws_boxes_and_segmentation(tmp_path):
    image = Image.new("RGB", (200, 100), (0, 0, 0))
    detections = [{"score": 0.9, "label": "cat", "box": {"xmin": 20, "ymin": 30, "xmax": 120, "ymax": 90}}]
    drawn = np.asarray(draw_detections(image, detections, path=tmp_path / "det.png"))
    assert drawn[60, 20].any() and not drawn[60, 60].any()  # the outline, not the inside
    result = {
        "scores": torch.tensor([0.5]),
        "labels": torch.tensor([1]),
        "boxes": torch.tensor([[5.0, 5.0, 50.0, 50.0]]),
    }
    assert draw_detections(image, result, id2label={1: "dog"}).getpixel((5, 30)) != (0, 0, 0)
    segmentation = torch.zeros(100, 200, dtype=torch.long)
    segmentation[:, 100:] = 255  # ignored: left uncoloured
    painted = np.asarray(draw_segmentation(image, segmentation, num_labels=3, path=tmp_path / "seg.png"))
    assert painted[50, 10].any() and not painted[50, 150].any()
    assert (tmp_path / "det.png").exists() and (tmp_path / "seg.png").exists()
    with pytest.raises(ValueError, match="segmentation is"):
        draw_segmentation(image, segmentation[:50], num_labels=3)


# ------------------------------------------------------------- pipelines and Hub folders


def save_folder(model, processor, folder):
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return str(folder)


PIPELINES = """
    import json, sys
    from PIL import Image
    from transformers import pipeline
    detr, segmentation, image = sys.argv[1], sys.argv[2], Image.open(sys.argv[3])
    boxes = pipeline("object-detection", model=detr, trust_remote_code=True)(image, threshold=0.0)
    segments = pipeline("image-segmentation", model=segmentation, trust_remote_code=True)(image)
    print(json.dumps({"boxes": boxes, "segments": [[s["label"], s["mask"].size] for s in segments]}))
"""


def test_detection_and_segmentation_pipelines_on_saved_folders(tmp_path, fresh_python):
    detr = save_folder(
        detection_model("detr", id2label={0: "a", 1: "b", 2: "c"}), PvtDetrImageProcessor(), tmp_path / "detr"
    )
    seg = save_folder(segmentation_model("semantic_fpn"), PvtSegmentationImageProcessor(), tmp_path / "seg")
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (481, 643, 3), dtype=np.uint8))
    image.save(tmp_path / "image.png")
    boxes = pipeline("object-detection", model=detr, trust_remote_code=False)(image, threshold=0.0)
    assert len(boxes) == 10 and {b["label"] for b in boxes} <= {"a", "b", "c"}
    assert all(0 <= b["box"]["xmin"] <= b["box"]["xmax"] <= 643 for b in boxes)
    segments = pipeline("image-segmentation", model=seg, trust_remote_code=False)(image)
    assert segments and all(s["mask"].size == (643, 481) for s in segments)
    deformable = save_folder(detection_model("deformable", "v2"), PvtDeformableDetrImageProcessor(), tmp_path / "ddetr")
    # Deformable DETR's post-processing: the top 100 (query, class) pairs, here all 10 x 3
    assert len(pipeline("object-detection", model=deformable, trust_remote_code=False)(image, threshold=0.0)) == 30
    # the same answers from the folders' remote code in a process without pvt_hf
    clean = fresh_python(PIPELINES, detr, seg, tmp_path / "image.png")
    assert [(b["label"], b["box"]) for b in clean["boxes"]] == [(b["label"], b["box"]) for b in boxes]
    assert [b["score"] for b in clean["boxes"]] == pytest.approx([b["score"] for b in boxes], abs=1e-5)
    assert clean["segments"] == [[s["label"], [643, 481]] for s in segments]


def test_saved_segmentation_and_detection_models_round_trip(tmp_path):
    for model in (segmentation_model("upernet", "v1"), detection_model("deformable", "v2")):
        model.eval()
        folder = tmp_path / type(model).__name__
        model.save_pretrained(folder)
        loaded = type(model).from_pretrained(folder).eval()
        pixels = torch.randn(1, 3, 96, 128)
        with torch.no_grad():
            expected, actual = model(pixel_values=pixels).logits, loaded(pixel_values=pixels).logits
        assert torch.equal(expected, actual)


# ------------------------------------------------------------- official mmsegmentation checkpoints


def mmseg_checkpoint(model):
    """`model`'s weights in the official mmsegmentation layout, with non-trivial (Sync)BN statistics."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2.0)
                module.num_batches_tracked.fill_(1000)
    weights = model.state_dict()
    backbone = {k.removeprefix("backbone."): v for k, v in weights.items() if k.startswith("backbone.")}
    checkpoint = {f"backbone.{k}": v for k, v in pvt_hf_to_official(backbone).items()}
    for key, tensor in weights.items():
        if not key.startswith("backbone."):
            checkpoint[key.replace("decode_head.classifier", "decode_head.conv_seg")] = tensor
    return {"meta": {"iter": 40000}, "state_dict": checkpoint}


@pytest.mark.parametrize("family", ["v1", "v2", "v2-li"])
def test_official_semantic_fpn_checkpoints_convert_exactly(family):
    model = segmentation_model("semantic_fpn", family, use_auxiliary_head=False).eval()
    checkpoint = mmseg_checkpoint(model)
    state_dict, config, report = convert_state_dict(
        checkpoint["state_dict"], "official", "semantic-fpn", config=model.config
    )
    assert report.ok and report.missing_keys == [] and report.unused_keys == []
    converted = PvtForSemanticSegmentation(config).eval()
    converted.load_state_dict(state_dict, strict=True)
    pixels = torch.randn(2, 3, 96, 130)
    with torch.no_grad():
        assert torch.equal(converted(pixel_values=pixels).logits, model(pixel_values=pixels).logits)


def test_full_size_semantic_fpn_checkpoint_is_recognised_from_its_weights():
    with torch.device("meta"):
        model = PvtForSemanticSegmentation(PvtSegmentationConfig.from_preset("pvt-small-semantic-fpn-ade20k"))
    checkpoint = mmseg_checkpoint(model)
    _, config, report = convert_state_dict(checkpoint["state_dict"], "official", "semantic-fpn")
    assert report.ok and report.unused_keys == []
    assert config.to_dict() == model.config.to_dict()


def test_semantic_fpn_task_refuses_a_classification_checkpoint():
    official = pvt_hf_to_official(segmentation_model("semantic_fpn").backbone.state_dict())
    with pytest.raises(ConversionError, match="Not a Semantic FPN checkpoint"):
        convert_state_dict(official, "official", "semantic-fpn")
