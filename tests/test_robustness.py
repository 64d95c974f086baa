"""Bad input, as a new user meets it (issue 11): a clear error naming what is wrong, or documented graceful handling;
never a silent wrong result, a changed config or a lost file. Also the heads' initialisation on every loading path."""

import inspect
import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import convert, tiny_config
from PIL import Image
from safetensors.torch import load_file, save_file
from tiny_heads import detection_model, mask2former_model, segmentation_model, tiny_detector
from torch.utils.flop_counter import FlopCounterMode

import pvt_hf
from pvt_hf import (
    PvtBackbone,
    PvtConfig,
    PvtForImageClassification,
    PvtForSemanticSegmentation,
    PvtHfImageProcessor,
    PvtMaskRCNNForInstanceSegmentation,
    PvtModel,
    PvtRetinaNetForObjectDetection,
    PvtSegmentationConfig,
    PvtSegmentationImageProcessor,
)

# ------------------------------------------------------------------ pixel values and labels


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_pixels_run_in_the_models_dtype(dtype):
    model = PvtForImageClassification(tiny_config("v1")).eval()
    pixels = torch.randn(1, 3, 64, 64).to(dtype)
    with torch.no_grad():
        logits = model(pixels).logits
        torch.testing.assert_close(logits, model(pixels.float()).logits)
    assert logits.dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64])
def test_integer_pixels_point_at_the_image_processor(dtype):
    with pytest.raises(TypeError, match=f"{dtype}.*image processor"):
        PvtModel(tiny_config("v2"))(torch.zeros(1, 3, 64, 64, dtype=dtype))


@pytest.mark.parametrize(
    "family, patch_sizes, minimum", [("v1", [8, 2, 2, 2], 64), ("v2", [4, 2, 2, 2], 32), ("v2-li", [8, 2, 2, 2], 64)]
)
def test_minimum_input_size_follows_the_strides(family, patch_sizes, minimum):
    config = tiny_config(family, patch_sizes=patch_sizes, image_size=128)
    assert config.min_input_size == minimum
    model = PvtModel(config).eval()
    with pytest.raises(ValueError, match=f"at least {minimum}x{minimum}"):
        model(torch.randn(1, 3, minimum - 1, minimum))
    with torch.no_grad():  # the smallest input leaves one token in the last stage
        assert model(torch.randn(1, 3, minimum, minimum)).last_hidden_state.shape[-2:] == (1, 1)


@pytest.mark.parametrize("labels", [[1, 10], [-3, 0]])
def test_class_ids_out_of_range_are_named(labels):
    model = PvtForImageClassification(tiny_config("v2", num_labels=10))
    before = model.config.to_dict()
    with pytest.raises(ValueError, match=r"outside \[0, 10\)"):
        model(torch.randn(2, 3, 32, 32), labels=torch.tensor(labels))
    assert model.config.to_dict() == before  # no failed call changes the config


def test_float_labels_do_not_fix_the_problem_type():
    model = PvtForImageClassification(tiny_config("v2", num_labels=4))
    pixels = torch.randn(2, 3, 32, 32)
    multi = model(pixels, labels=torch.tensor([[0.0, 1, 1, 0], [1, 0, 0, 0]])).loss
    assert model.config.problem_type is None
    single = model(pixels, labels=torch.tensor([1, 3])).loss  # failed before: the config had turned multi-label
    assert multi.isfinite() and single.isfinite()


def test_labels_for_a_model_without_classifier_are_refused():
    model = PvtForImageClassification(tiny_config("v2", num_labels=0))
    with pytest.raises(ValueError, match="num_labels = 0"):
        model(torch.randn(1, 3, 32, 32), labels=torch.tensor([0]))


def test_flop_counter_under_no_grad_on_v1():
    model = PvtForImageClassification(tiny_config("v1", image_size=64)).eval()  # the table's own grid: no resize
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.randn(1, 3, 64, 64))
    assert counter.get_total_flops() > 0


# ------------------------------------------------------------------ configs


@pytest.mark.parametrize(
    "field, value",
    [
        ("linear_sra", "false"),
        ("conv_ffn", 1),
        ("depths", "2222"),
        ("hidden_dropout_prob", "0.1"),
        ("image_size", 224.0),
    ],
)
def test_config_fields_of_the_wrong_type_are_refused(field, value):
    with pytest.raises(ValueError, match=f"PvtConfig.{field}"):
        tiny_config("v2", **{field: value})


def test_hand_edited_config_json_with_a_string_boolean_is_refused(tmp_path):
    PvtModel(tiny_config("v2")).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "linear_sra": "false"}))
    with pytest.raises(ValueError, match="linear_sra must be true or false"):
        PvtModel.from_pretrained(tmp_path)


def test_mlp_ratios_that_round_to_an_empty_mlp_are_refused():
    with pytest.raises(ValueError, match=r"mlp_ratios\[0\] = 0.05"):
        tiny_config("v2", mlp_ratios=[0.05, 2, 2, 2])


# ------------------------------------------------------------------ checkpoints


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_damaged_safetensors_name_the_file(tmp_path, damage):
    PvtModel(tiny_config("v2")).save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"" if damage == "empty" else weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(OSError, match="model.safetensors is not a complete safetensors file"):
        PvtModel.from_pretrained(tmp_path)


def test_folder_without_config_json_is_refused(tmp_path):
    PvtModel(tiny_config("v2")).save_pretrained(tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(OSError, match="has no config.json"):
        PvtModel.from_pretrained(tmp_path)


def test_loading_info_comes_back_intact(tmp_path):
    PvtForImageClassification(tiny_config("v2")).save_pretrained(tmp_path)
    model, info = PvtBackbone.from_pretrained(tmp_path, output_loading_info=True)
    assert isinstance(model, PvtBackbone) and set(info) >= {"missing_keys", "unexpected_keys", "mismatched_keys"}


def test_segmentation_options_reach_the_backbone(tmp_path):
    assert PvtSegmentationConfig.sub_configs == {"backbone_config": PvtConfig}
    segmentation_model("semantic_fpn").save_pretrained(tmp_path)
    model = PvtForSemanticSegmentation.from_pretrained(tmp_path, attn_implementation="eager")
    assert model.backbone.config._attn_implementation == "eager"
    model.config.output_attentions = True
    assert len(model(torch.randn(1, 3, 64, 64)).attentions) == 5


@pytest.mark.parametrize("name", ["PvtForObjectDetection", "PvtDeformableDetrForObjectDetection"])
def test_detectors_advertise_the_options_they_take(name):
    """transformers reads a model's options (output_attentions, ...) from the type of its `**kwargs`: the PVT wrapper
    must keep DETR's, or tooling (and transformers' common tests) think it cannot return attentions."""
    kwargs = inspect.signature(getattr(pvt_hf, name).forward).parameters["kwargs"]
    assert "output_attentions" in kwargs.annotation.__args__[0].__annotations__


# ------------------------------------------------------------------ converter


def official_checkpoint(tmp_path, poison: bool = False) -> Path:
    model = PvtForImageClassification(PvtConfig.from_preset("pvt-v2-b0"))
    state_dict = pvt_hf.conversion.pvt_hf_to_official(model.state_dict())
    if poison:
        state_dict["head.weight"][0, 0] = float("nan")
    torch.save(state_dict, tmp_path / "pvt_v2_b0.pth")
    return tmp_path / "pvt_v2_b0.pth"


def test_verify_fails_on_nan_weights(tmp_path, capsys):
    checkpoint = official_checkpoint(tmp_path, poison=True)
    code = convert("official", checkpoint, tmp_path / "o", "--verify")
    assert code == 2 and "non-finite (NaN / inf) values in classifier.weight" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_max_abs_difference_sees_nan():
    a = torch.zeros(3)
    assert pvt_hf.reference.max_abs_difference(a, torch.tensor([0.0, float("nan"), 0.0])) == float("inf")


def test_converter_refuses_a_non_empty_output_and_keeps_the_readme(tmp_path, capsys):
    checkpoint = official_checkpoint(tmp_path)
    output = tmp_path / "mine"
    output.mkdir()
    (output / "README.md").write_text("my notes")
    assert convert("official", checkpoint, output) == 1
    assert "--overwrite" in capsys.readouterr().err and (output / "README.md").read_text() == "my notes"
    assert convert("official", checkpoint, output, "--overwrite") == 0
    assert "replacing" in capsys.readouterr().err and "pvt-v2-b0" in (output / "README.md").read_text()


def test_converter_names_a_truncated_safetensors_checkpoint(tmp_path, capsys):
    broken = tmp_path / "model.safetensors"
    save_file({"a": torch.zeros(100)}, broken)
    broken.write_bytes(broken.read_bytes()[:50])
    assert convert("timm", broken, tmp_path / "o") == 1
    assert str(broken) in capsys.readouterr().err


# ------------------------------------------------------------------ image processors


def test_16_bit_images_are_scaled_not_clipped():
    processor = PvtHfImageProcessor()
    gray16 = np.full((40, 50), 32896, np.uint16)  # 128 in 8 bits
    expected = processor(np.full((40, 50, 3), 128, np.uint8), return_tensors="pt").pixel_values
    for image in (Image.fromarray(gray16), np.repeat(gray16[..., None], 3, -1), gray16):
        torch.testing.assert_close(processor(image, return_tensors="pt").pixel_values, expected)


def test_float_images_in_unit_range_get_transformers_warning(caplog):
    image = np.full((40, 50, 3), 0.5, np.float32)
    logger = logging.getLogger("pvt_hf.image_processing_pvt")
    with caplog.at_level(logging.WARNING):
        logger.propagate = True
        PvtHfImageProcessor()(image, return_tensors="pt")
    assert "do_rescale=False" in caplog.text
    scaled = PvtHfImageProcessor()(image, do_rescale=False, return_tensors="pt").pixel_values
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(scaled[0, :, 0, 0], (0.5 - mean) / std, atol=0.01, rtol=0)  # (8-bit resampling)


@pytest.mark.parametrize(
    "name",
    [
        "PvtHfImageProcessor",
        "PvtDetrImageProcessor",
        "PvtDeformableDetrImageProcessor",
        "PvtSegmentationImageProcessor",
    ],
)
def test_empty_batch_and_grayscale_arrays(name):
    processor = getattr(pvt_hf, name)
    with pytest.raises(ValueError, match="empty list of images"):
        processor()([], return_tensors="pt")
    assert processor()(np.full((40, 50), 7, np.uint8), return_tensors="pt").pixel_values.shape[:2] == (1, 3)


def test_segmentation_maps_that_cannot_be_label_maps_are_refused():
    processor, image = PvtSegmentationImageProcessor(), np.zeros((40, 50, 3), np.uint8)
    with pytest.raises(ValueError, match="one class id per pixel"):
        processor(image, segmentation_maps=np.zeros((40, 50, 3), np.uint8))
    with pytest.raises(ValueError, match="2 images but 1 segmentation maps"):
        processor([image, image], segmentation_maps=[np.zeros((40, 50), np.uint8)])


# ------------------------------------------------------------------ head initialisation


def semantic_fpn_reference(model):
    """mmsegmentation's Semantic FPN initialisation, by formula: FPN neck convs Xavier-uniform (mmseg FPN's init_cfg),
    head convs Kaiming-normal fan-out (mmcv ConvModule), conv_seg normal(0, 0.01), zero biases, BatchNorm 1/0."""
    expected = {}
    for name, param in model.named_parameters():
        if name.startswith("backbone."):
            continue
        fan_in, fan_out = param[0].numel(), param.shape[0] * param[0, 0].numel() if param.ndim == 4 else 0
        if param.ndim == 1:
            expected[name] = (1.0 if name.endswith(("bn.weight", "norm.weight")) else 0.0, 0.0)
        elif "classifier" in name:
            expected[name] = (0.0, 0.01)
        elif name.startswith("neck."):
            expected[name] = (0.0, (2.0 / (fan_in + fan_out)) ** 0.5)
        else:
            expected[name] = (0.0, (2.0 / fan_out) ** 0.5)
    return expected


def mmdetection_detector_reference(model):
    """mmdetection 2.13's initialisation of the official configs' RetinaNet / Mask R-CNN, by formula: FPN convs
    Xavier-uniform; RetinaHead and RPNHead convs normal(0, 0.01), RetinaHead's classifier bias -log(99) (prior 0.01);
    Shared2FCBBoxHead's shared fcs Xavier-normal, fc_cls normal(0, 0.01), fc_reg normal(0, 0.001); FCNMaskHead's
    convs, upsample and logits Kaiming-normal fan-out; zero biases."""
    expected = {}
    for name, param in model.named_parameters():
        if name.startswith("backbone."):
            continue
        receptive = param[0, 0].numel() if param.ndim == 4 else 1
        fan_in, fan_out = param.shape[1] * receptive if param.ndim > 1 else 0, param.shape[0] * receptive
        if name.endswith("classification_head.cls_logits.bias"):
            expected[name] = (-math.log(99), 0.0)
        elif param.ndim == 1:
            expected[name] = (0.0, 0.0)
        elif name.startswith(("neck.", "roi_heads.box_head.")):
            expected[name] = (0.0, (2.0 / (fan_in + fan_out)) ** 0.5)
        elif name.startswith(("retinanet.", "rpn.")) or "cls_score" in name:
            expected[name] = (0.0, 0.01)
        elif "bbox_pred" in name:
            expected[name] = (0.0, 0.001)
        else:
            expected[name] = (0.0, (2.0 / fan_out) ** 0.5)
    return expected


def transformers_twin(model):
    """transformers' own model of the same architecture with the same sizes and a PVT backbone (UperNet, DETR,
    Deformable DETR): its freshly initialised parameters are the reference statistics."""
    config = model.config
    kwargs = {k: v for k, v in config.to_dict().items() if k not in ("model_type", "architectures", "auto_map")}
    kwargs["backbone_config"] = config.backbone_config
    if isinstance(model, PvtForSemanticSegmentation):
        from transformers import UperNetConfig, UperNetForSemanticSegmentation

        twin = UperNetForSemanticSegmentation(UperNetConfig(**kwargs))
    else:
        import transformers

        # PvtXForY subclasses transformers' XForY, configured by a subclass of XConfig
        model_class = next(c for c in type(model).__mro__[1:] if c.__module__.startswith("transformers.models."))
        config_class = next(c for c in type(config).__mro__[1:] if c.__module__.startswith("transformers.models."))
        assert getattr(transformers, model_class.__name__) is model_class
        twin = model_class(config_class(**kwargs))
    return {n: (p.mean().item(), p.std().item()) for n, p in twin.named_parameters() if "backbone" not in n}


def reference_statistics(model):
    if isinstance(model, PvtForSemanticSegmentation) and model.config.decode_head == "semantic_fpn":
        return semantic_fpn_reference(model)
    if isinstance(model, (PvtRetinaNetForObjectDetection, PvtMaskRCNNForInstanceSegmentation)):
        return mmdetection_detector_reference(model)
    return transformers_twin(model)


SEGMENTATION_SIZES = dict(hidden_size=32, fpn_channels=32, auxiliary_channels=32, num_labels=12)
DETR_SIZES = dict(num_labels=5, encoder_ffn_dim=64, decoder_ffn_dim=64)
HEAD_PRESETS = {  # tensors large enough for their statistics to say something
    "semantic_fpn": lambda: segmentation_model("semantic_fpn", **SEGMENTATION_SIZES),
    "upernet": lambda: segmentation_model("upernet", **SEGMENTATION_SIZES),
    "detr": lambda: detection_model("detr", "v2", **DETR_SIZES, decoder_layers=1),
    "deformable_detr": lambda: detection_model(
        "deformable", "v2", **DETR_SIZES, encoder_n_points=2, decoder_n_points=2
    ),
    "mask2former": lambda: mask2former_model(num_labels=4),  # its reference: transformers' own Mask2Former
    "retinanet": lambda: tiny_detector("retinanet", fpn_channels=32, num_labels=5),
    "mask_rcnn": lambda: tiny_detector("mask-rcnn", fpn_channels=32, num_labels=5),
}


def assert_statistics_match(model, reference, names=None):
    params = dict(model.named_parameters())
    names = [n for n in reference if n in params] if names is None else names
    assert names, "no head parameter compared"
    for name in names:
        ref_mean, ref_std = reference[name]
        param = params[name].detach()
        assert param.isfinite().all(), f"{name} holds NaN/inf"
        if ref_std == 0.0:
            torch.testing.assert_close(param, torch.full_like(param, ref_mean), msg=f"{name} should be {ref_mean}")
            continue
        tolerance = 0.1 + 4 / param.numel() ** 0.5  # sampling error of a std estimate, with margin
        assert abs(param.std().item() - ref_std) <= tolerance * ref_std, (
            f"{name}: std {param.std():.4g} vs {ref_std:.4g}"
        )
        assert abs(param.mean().item() - ref_mean) <= 5 * ref_std / param.numel() ** 0.5 + 1e-6, (
            f"{name}: mean {param.mean():.4g}"
        )


@pytest.fixture(params=list(HEAD_PRESETS))
def head_model(request):
    torch.manual_seed(0)
    return HEAD_PRESETS[request.param]()


def test_fresh_heads_follow_their_reference_initialisation(head_model):
    assert_statistics_match(head_model, reference_statistics(head_model))


def test_heads_missing_from_a_checkpoint_or_resized_are_initialised_as_their_reference(head_model, tmp_path):
    head_model.save_pretrained(tmp_path / "full")
    reference = reference_statistics(head_model)
    saved = load_file(tmp_path / "full" / "model.safetensors")  # (names as transformers saves them)
    original = dict(head_model.named_parameters())
    # a checkpoint without its head: every head parameter must come out as the reference's, not as memory garbage
    (tmp_path / "trunk").mkdir()
    save_file({k: v for k, v in saved.items() if "backbone" in k}, tmp_path / "trunk" / "model.safetensors")
    (tmp_path / "trunk" / "config.json").write_text((tmp_path / "full" / "config.json").read_text())
    assert_statistics_match(type(head_model).from_pretrained(tmp_path / "trunk"), reference)
    # a new label set: the resized classifiers are initialised, everything else is loaded exactly
    resized = type(head_model).from_pretrained(tmp_path / "full", num_labels=3, ignore_mismatched_sizes=True)
    changed = [n for n, p in resized.named_parameters() if p.shape != original[n].shape]
    assert changed
    assert_statistics_match(resized, reference_statistics(resized), names=changed)
    for name, param in resized.named_parameters():
        if name not in changed:
            torch.testing.assert_close(param.detach(), original[name].detach(), msg=name)


def test_a_one_image_batch_trains_a_batch_norm_head():
    """UperNet's pooling pyramid makes 1x1 maps: BatchNorm has no batch statistics for one image (PyTorch raises), so
    a partial last batch of one image would end a run. The scripts' loop normalises such a batch with the running
    statistics and gives the layers back in training mode."""
    from pvt_hf.training import batch_norm_on_running_stats_for_one_sample

    config = PvtSegmentationConfig.from_preset("pvt-v2-b0-upernet-ade20k", num_labels=4)
    model = PvtForSemanticSegmentation(config).train()
    pixels, labels = torch.randn(1, 3, 64, 64), torch.randint(0, 4, (1, 64, 64))
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        model(pixel_values=pixels, labels=labels)
    with batch_norm_on_running_stats_for_one_sample(model, batch_size=1):
        model(pixel_values=pixels, labels=labels).loss.backward()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(m.training for m in norms)
    assert all(p.grad is not None for p in model.decode_head.parameters() if p.requires_grad)
