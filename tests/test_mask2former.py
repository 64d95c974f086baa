"""Mask2Former on a PVT backbone: training step, processor targets, semantic post-processing, presets, saved folders
serving pipeline("image-segmentation") with and without pvt_hf."""

import numpy as np
import pytest
import torch
import transformers
from conftest import tiny_config
from PIL import Image
from tiny_heads import SMALL_MASK2FORMER, mask2former_model
from transformers import AutoModelForUniversalSegmentation, pipeline

from pvt_hf import (
    MASK2FORMER_PRESETS,
    PRESETS,
    PvtBackbone,
    PvtMask2FormerConfig,
    PvtMask2FormerForUniversalSegmentation,
    PvtMask2FormerImageProcessor,
)
from pvt_hf.transfer import find_backbone


def small_processor(**kwargs):
    return PvtMask2FormerImageProcessor(size={"shortest_edge": 64, "longest_edge": 128}, **kwargs)


def images_and_maps(seed=0):
    """Two images of different sizes (the batch is padded) with ADE20K-style label maps (0 = "other", 1..3 classes)."""
    rng = np.random.default_rng(seed)
    images, maps = [], []
    for height, width in ((70, 90), (64, 64)):
        images.append(Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)))
        label_map = np.zeros((height, width), dtype=np.uint8)
        label_map[: height // 2] = 1
        label_map[height // 2 :, : width // 2] = 3
        maps.append(Image.fromarray(label_map))
    return images, maps


def test_processor_gives_binary_mask_targets_for_a_padded_batch():
    images, maps = images_and_maps()
    batch = small_processor()(images, segmentation_maps=maps, return_tensors="pt")
    assert batch.pixel_values.shape == (2, 3, 64, 96) and batch.pixel_mask[1, :, 64:].sum() == 0  # 64x64 image padded
    assert [c.tolist() for c in batch.class_labels] == [[0, 2], [0, 2]]  # reduce-labels: 1 -> 0, 3 -> 2, "other" gone
    for masks in batch.mask_labels:
        assert masks.shape == (2, 64, 96) and set(masks.unique().tolist()) <= {0.0, 1.0}  # padding is "no segment"
    assert batch.mask_labels[1][:, :, 64:].sum() == 0


def transformers_mask2former(family):
    """transformers' own Mask2Former, its backbone built from a PvtConfig through AutoBackbone (pvt_hf registers it)."""
    stages = [f"stage{i}" for i in range(1, 5)]
    config = transformers.Mask2FormerConfig(
        backbone_config=tiny_config(family, num_labels=0, out_features=stages), **SMALL_MASK2FORMER
    )
    return transformers.Mask2FormerForUniversalSegmentation(config)


@pytest.mark.parametrize("build", [mask2former_model, transformers_mask2former], ids=["pvt_hf", "transformers"])
def test_tiny_mask2former_trains_a_step_into_the_backbone(build):
    torch.manual_seed(0)
    model = build("v1").train()
    batch = small_processor()(*images_and_maps(), return_tensors="pt")
    _, backbone = find_backbone(model)
    assert isinstance(backbone, PvtBackbone)
    before = {n: p.detach().clone() for n, p in backbone.named_parameters()}
    loss = model(**batch).loss
    assert torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in backbone.parameters())
    torch.optim.AdamW(model.parameters(), lr=1e-3).step()
    assert any(not torch.equal(before[n], p) for n, p in backbone.named_parameters())


def test_semantic_post_processing_gives_label_maps_at_the_requested_size():
    model = mask2former_model().eval()
    processor = small_processor()
    images, _ = images_and_maps()
    with torch.no_grad():
        outputs = model(**processor(images[0], return_tensors="pt"))
    (label_map,) = processor.post_process_semantic_segmentation(outputs, target_sizes=[(70, 90)])
    assert label_map.shape == (70, 90) and 0 <= label_map.min() and label_map.max() < 3


def test_ade20k_presets_are_mask2formers_semantic_setup():
    assert len(MASK2FORMER_PRESETS) == len(PRESETS) and "pvt-v2-b2-mask2former-ade20k" in MASK2FORMER_PRESETS
    config = PvtMask2FormerConfig.from_preset("pvt-v2-b2-mask2former-ade20k")
    assert config.num_labels == 150 and config.id2label[0] == "wall"
    assert config.backbone_config.depths == [3, 4, 6, 3] and config.backbone_config.out_features == [
        f"stage{i}" for i in range(1, 5)
    ]
    assert (config.num_queries, config.hidden_dim, config.encoder_layers, config.decoder_layers) == (100, 256, 6, 10)
    assert (config.class_weight, config.mask_weight, config.dice_weight, config.no_object_weight) == (
        2.0,
        5.0,
        5.0,
        0.1,
    )
    processor = PvtMask2FormerImageProcessor()
    assert processor.do_reduce_labels and processor.ignore_index == 255 and processor.size.shortest_edge == 512
    with torch.device("meta"):
        model = AutoModelForUniversalSegmentation.from_config(config)
    assert type(model) is PvtMask2FormerForUniversalSegmentation
    with pytest.raises(ValueError, match="pvt-v2-b2-mask2former-ade20k"):
        PvtMask2FormerConfig.from_preset("pvt-v9-mask2former-ade20k")


def test_saved_model_round_trips_exactly(tmp_path):
    model = mask2former_model("v2-li").eval()
    model.save_pretrained(tmp_path)
    loaded = AutoModelForUniversalSegmentation.from_pretrained(tmp_path).eval()
    assert type(loaded) is PvtMask2FormerForUniversalSegmentation
    pixels = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(
            model(pixel_values=pixels).masks_queries_logits, loaded(pixel_values=pixels).masks_queries_logits
        )


SEGMENT = """
    import json, sys
    import numpy as np
    from PIL import Image
    from transformers import pipeline
    segment = pipeline("image-segmentation", model=sys.argv[1], trust_remote_code=True)
    segments = segment(Image.open(sys.argv[2]), subtask="semantic")
    model = type(segment.model)
    print(json.dumps({"model": f"{model.__module__}.{model.__name__}", "segments": [
        [s["label"], s["mask"].size, np.asarray(s["mask"]).tolist()] for s in segments
    ]}))
"""


def test_pipeline_serves_the_saved_folder_with_and_without_pvt_hf(tmp_path, fresh_python):
    folder = tmp_path / "mask2former"
    mask2former_model(id2label={0: "a", 1: "b", 2: "c"}).save_pretrained(folder)
    small_processor().save_pretrained(folder)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (81, 103, 3), dtype=np.uint8))
    image.save(tmp_path / "image.png")
    segment = pipeline("image-segmentation", model=str(folder), trust_remote_code=False)
    assert type(segment.model) is PvtMask2FormerForUniversalSegmentation
    segments = segment(image, subtask="semantic")
    assert segments and {s["label"] for s in segments} <= {"a", "b", "c"} and segments[0]["mask"].size == (103, 81)
    assert isinstance(segment(image, threshold=0.0), list)  # default subtask (panoptic post-processing)
    clean = fresh_python(SEGMENT, folder, tmp_path / "image.png")  # the folder's remote code, without pvt_hf
    module, name = clean["model"].rsplit(".", 1)
    assert module.startswith("transformers_modules.") and name == "PvtMask2FormerForUniversalSegmentation"
    assert clean["segments"] == [[s["label"], [103, 81], np.asarray(s["mask"]).tolist()] for s in segments]


def test_segmentation_script_trains_and_evaluates_a_mask2former(tmp_path):
    """Two steps on the embedded default through examples/run_semantic_segmentation.py: targets from the processor,
    the model's loss, mIoU through the saved processor's semantic post-processing; the folder serves the pipeline."""
    import json

    from test_training import run_script

    labels = {0: "other", 1: "rectangle", 2: "ellipse", 3: "triangle"}  # the embedded shapes, without reduce-labels
    mask2former_model(num_labels=len(labels), id2label=labels).save_pretrained(tmp_path / "tiny")
    output = tmp_path / "run"
    run_script(
        "run_semantic_segmentation.py",
        output,
        "--model_name_or_path",
        str(tmp_path / "tiny"),
        "--max_train_steps",
        "2",
        "--per_device_train_batch_size",
        "2",
        "--max_train_samples",
        "8",
        "--max_eval_samples",
        "4",
    )
    results = json.loads((output / "all_results.json").read_text())
    assert 0.0 <= results["eval_mean_iou"] <= 1.0 and "eval_overall_accuracy" in results
    assert json.loads((output / "config.json").read_text())["model_type"] == PvtMask2FormerConfig.model_type
    saved = json.loads((output / "preprocessor_config.json").read_text())
    assert saved["image_processor_type"] == "PvtMask2FormerImageProcessor" and saved["size"]["shortest_edge"] == 128
    segments = pipeline("image-segmentation", model=str(output))(Image.new("RGB", (150, 130)), subtask="semantic")
    assert segments and {s["label"] for s in segments} <= set(labels.values())


def test_semantic_post_processing_is_mask2formers_full_resolution_inference():
    """Mask logits go straight to the target size (the original semantic_inference), not through 384x384."""
    torch.manual_seed(0)
    classes, masks = torch.randn(2, 10, 4), torch.randn(2, 10, 30, 40)
    outputs = type("Outputs", (), {"class_queries_logits": classes, "masks_queries_logits": masks})()
    label_maps = small_processor().post_process_semantic_segmentation(outputs, target_sizes=[(120, 160), (61, 83)])
    for i, size in enumerate([(120, 160), (61, 83)]):
        upsampled = torch.nn.functional.interpolate(masks[i : i + 1], size=size, mode="bilinear", align_corners=False)[
            0
        ]
        scores = (classes[i].softmax(-1)[:, :3, None, None] * upsampled.sigmoid()[:, None]).sum(0)
        assert torch.equal(label_maps[i], scores.argmax(0))
    with pytest.raises(ValueError, match="1 target sizes for a batch of 2"):
        small_processor().post_process_semantic_segmentation(outputs, target_sizes=[(8, 8)])
