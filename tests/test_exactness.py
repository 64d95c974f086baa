"""Exactly the official code, in float64, on the same weights converted through the official key names.

References: timm's pvt_v2 (a port of the official v2 code, with its LayerNorm eps) for v2, and for v1, whose official
code is on no package index, transformers' own PVT with each LayerNorm's eps set as the official code has it (1e-5 in
the patch embeddings and spatial reductions, 1e-6 elsewhere) and, off 224, position tables interpolated by the official
formula (`reference.give_transformers_v1_tables`). In float64 only rounding separates two implementations of the same
computation (measured ~1e-15 relative), while one LayerNorm's eps alone moves the outputs by ~1e-6: the bound here,
1e-9 relative max-abs difference, separates the two by three orders of magnitude either way.

Sizes. Float64 has no fast CPU kernel for the depth-wise convs, and CI has 2 cores, so:
- every published variant at full size, logits at 224x224 and at 225x301 (uneven: every stage's strided conv floors,
  and v1's tables are interpolated); the smallest of each version (pvt-v2-b0, pvt-tiny) in the quick run, the others
  `slow`;
- as backbones (all stage maps) at a detection size, 800x1216, each distinct layout with one block per stage (`slow`):
  a variant's blocks within a stage are identical, so its layout (widths, heads, SR ratios, MLP ratios, linear SRA) is
  what a detection-size input exercises. v2-b1..b4 differ only in depth and share one layout; v1's four variants
  share one. A quick-run copy runs the v2-b0 and v1 layouts at 512x640.
"""

import pytest
import torch

from pvt_hf import PRESETS, PvtBackbone, PvtConfig, PvtForImageClassification, reference
from pvt_hf.conversion import convert_state_dict, pvt_hf_to_official
from pvt_hf.reference import verify_against_reference

TOLERANCE = 1e-9
UNEVEN = (225, 301)
V2 = [name for name in PRESETS if name.startswith("pvt-v2")]
V1 = [name for name in PRESETS if not name.startswith("pvt-v2")]
QUICK = ("pvt-v2-b0", "pvt-tiny")


def quick_or_slow(names):
    return [name if name in QUICK else pytest.param(name, marks=pytest.mark.slow) for name in names]


def distinct_layouts(names) -> dict[str, list[str]]:
    """The variants grouped by layout (everything but the depths): {first variant: all variants of that layout}."""
    groups = {}
    for name in names:
        layout = repr({k: v for k, v in PRESETS[name].items() if k != "depths"})
        groups.setdefault(layout, []).append(name)
    return {members[0]: members for members in groups.values()}


def random_float64_model(config: PvtConfig) -> PvtForImageClassification:
    """Random weights in float64, with non-trivial norms and biases so that a mis-mapped tensor cannot hide."""
    torch.manual_seed(0)
    model = PvtForImageClassification(config).double().eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                param.add_(torch.randn_like(param) * 0.1)
    return model


def pixels(height, width):
    return torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def assert_exact(actual, expected, what):
    """Every output pair within `TOLERANCE` (relative max-abs difference); the measured differences are printed (`-rP`
    shows them)."""
    assert len(actual) == len(expected), what
    differences = []
    for act, exp in zip(actual, expected, strict=True):
        assert act.shape == exp.shape, what
        differences.append(reference.relative_difference(act, exp))
    print(f"{what}: relative difference {', '.join(f'{d:.2e}' for d in differences)}")
    assert max(differences) <= TOLERANCE, f"{what}: relative differences {differences}"


def v1_reference(config, official, task, height, width):
    """transformers' v1 (official eps) holding `official`, with tables for `height` x `width`, in float64."""
    model = reference.transformers_reference(config, task).double()
    reference.load_into_transformers(model, official)
    if (height, width) != (config.image_size, config.image_size):
        reference.give_transformers_v1_tables(model, config, height, width)
    return model


@pytest.mark.parametrize("name", quick_or_slow(V2))
def test_v2_logits_equal_timm(name):
    model = random_float64_model(PvtConfig.from_preset(name))
    timm_model = reference.timm_reference(model.config, pvt_hf_to_official(model.state_dict())).double()
    with torch.no_grad():
        outputs = {size: ([model(pixels(*size)).logits], [timm_model(pixels(*size))]) for size in [(224, 224), UNEVEN]}
    for size, (actual, expected) in outputs.items():  # both sizes measured before either is judged
        assert_exact(actual, expected, f"{name} at {size}")


@pytest.mark.parametrize("name", quick_or_slow(V1))
def test_v1_logits_equal_official_eps_transformers(name):
    model = random_float64_model(PvtConfig.from_preset(name))
    official = pvt_hf_to_official(model.state_dict())
    outputs = {}
    for size in [(224, 224), UNEVEN]:
        expected = v1_reference(model.config, official, "classification", *size)
        with torch.no_grad():
            outputs[size] = [model(pixels(*size)).logits], [expected(pixels(*size)).logits]
    for size, (actual, expected) in outputs.items():  # both sizes measured before either is judged
        assert_exact(actual, expected, f"{name} at {size}")


def backbone_pair(name):
    """A one-block-per-stage model with `name`'s layout, and the `PvtBackbone` converted from its official weights."""
    config = PvtConfig.from_preset(name, depths=[1, 1, 1, 1], out_features=["stage1", "stage2", "stage3", "stage4"])
    official = pvt_hf_to_official(random_float64_model(config).state_dict())
    state_dict, config, _ = convert_state_dict(official, "official", "backbone", config=config)
    backbone = PvtBackbone(config).double().eval()
    backbone.load_state_dict(state_dict, strict=True)
    return backbone, official


def detection_sizes(quick_names):
    """800x1216 for every layout (slow); 512x640 for `quick_names` in the quick run."""
    layouts = {**distinct_layouts(V2), **distinct_layouts(V1)}
    slow = [
        pytest.param(name, (800, 1216), marks=pytest.mark.slow, id=f"{'/'.join(m)}-800x1216")
        for name, m in layouts.items()
    ]
    return [pytest.param(name, (512, 640), id=f"{name}-512x640") for name in quick_names] + slow


@pytest.mark.parametrize("name, size", detection_sizes(QUICK))
def test_backbone_feature_maps_equal_the_reference_at_detection_size(name, size):
    """v2: all four stage maps against timm's; v1: stages 1-3 against transformers' (its v1 has no backbone: its
    stage 4 always runs the class token, which the official dense-prediction backbone drops)."""
    backbone, official = backbone_pair(name)
    with torch.no_grad():
        actual = list(backbone(pixels(*size)).feature_maps)
        if backbone.config.absolute_pos_embed:
            expected = reference.transformers_v1_stage_maps(
                v1_reference(backbone.config, official, "backbone", *size), pixels(*size), backbone.config
            )
            actual = actual[:3]
        else:
            timm_model = reference.timm_reference(backbone.config, official).double()
            expected = timm_model.forward_intermediates(pixels(*size), intermediates_only=True)
    assert_exact(actual, expected, f"{name} layout at {size}")


# ------------------------------------------------------------------------------------- --verify uses these references


@pytest.mark.parametrize("family, expected", [("pvt-v2-b0", "timm"), ("pvt-tiny", "transformers")])
def test_verify_compares_with_the_exact_reference_and_catches_an_eps_deviation(family, expected):
    """--verify passes the exact model (classifier and backbone) and fails one computing with one eps for every
    LayerNorm (pvt_hf before the per-norm fields, and transformers): off by far more than rounding."""
    tiny = dict(depths=[1, 1, 1, 1], hidden_sizes=[16, 32, 40, 64], mlp_ratios=[2, 2, 2, 2], num_labels=10)
    exact = random_float64_model(PvtConfig.from_preset(family, **tiny)).float()
    official = pvt_hf_to_official(exact.state_dict())
    backbone = backbone_of(exact)
    backbone_only = pvt_hf_to_official(backbone.state_dict())  # a backbone folder's weights: no head
    for model, task, weights in [
        (exact, "classification", official),
        (backbone, "backbone", official),
        (backbone, "backbone", backbone_only),
    ]:
        difference, name = verify_against_reference(model, weights, task)
        assert name.startswith(expected) and difference <= TOLERANCE, (task, name, difference)
    one_eps = PvtConfig.from_preset(
        family, **tiny, patch_embed_layer_norm_eps=1e-6, spatial_reduction_layer_norm_eps=1e-6
    )
    one_eps_model = PvtForImageClassification(one_eps).eval()
    one_eps_model.load_state_dict(exact.state_dict())
    difference, _ = verify_against_reference(one_eps_model, official, "classification")
    assert difference > 100 * TOLERANCE


def backbone_of(model: PvtForImageClassification) -> PvtBackbone:
    backbone = PvtBackbone(model.config).eval()
    backbone.load_state_dict(model.pvt.state_dict(), strict=False)
    return backbone


# ------------------------------------------------------------------------------------------ config.json compatibility


def test_presets_carry_the_official_eps_and_old_config_json_keeps_its_single_eps(tmp_path):
    for name in PRESETS:
        config = PvtConfig.from_preset(name)
        assert (config.layer_norm_eps, config.patch_embed_layer_norm_eps, config.spatial_reduction_layer_norm_eps) == (
            1e-6,
            1e-5,
            1e-5,
        )
    model = PvtForImageClassification(PvtConfig.from_preset("pvt-v2-b0", **dict(depths=[1, 1, 1, 1]))).eval()
    assert model.pvt.encoder.stages[0].patch_embed.norm.eps == 1e-5
    assert model.pvt.encoder.stages[0].blocks[0].attention.reduction_norm.eps == 1e-5
    assert model.pvt.encoder.stages[0].blocks[0].norm1.eps == 1e-6
    # a config.json written before the per-norm fields: every LayerNorm keeps the one eps it had
    old = model.config.to_dict()
    del old["patch_embed_layer_norm_eps"], old["spatial_reduction_layer_norm_eps"]
    loaded = PvtConfig.from_dict(old)
    assert loaded.patch_embed_layer_norm_eps == loaded.spatial_reduction_layer_norm_eps == old["layer_norm_eps"]
    old_model = PvtForImageClassification(loaded)
    assert {m.eps for m in old_model.modules() if isinstance(m, torch.nn.LayerNorm)} == {1e-6}
    loaded.save_pretrained(tmp_path)  # saved again, the resolved values are written out
    assert PvtConfig.from_pretrained(tmp_path).patch_embed_layer_norm_eps == 1e-6
    with pytest.raises(ValueError, match="patch_embed_layer_norm_eps must be a number"):
        PvtConfig(patch_embed_layer_norm_eps="1e-5")
