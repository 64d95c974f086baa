"""Fidelity to the papers, the official code's numbers, and transformers' own PVT implementations."""

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config, transformers_reference
from torch.utils.flop_counter import FlopCounterMode

from pvt_hf import PRESETS, PvtBackbone, PvtConfig, PvtForImageClassification, count_macs
from pvt_hf.conversion import convert_state_dict
from pvt_hf.modeling_pvt import PvtAttention
from pvt_hf.paper_numbers import IMAGENET
from pvt_hf.reference import give_transformers_v1_tables

# Measured on the official code (shared/reference/pvt_reference_numbers.md): exact parameter counts of its model
# definitions with a 1000-class head, and MACs (G) at 224x224.
OFFICIAL = {
    "pvt-tiny": (13_229_288, 1.933),
    "pvt-small": (24_485_864, 3.816),
    "pvt-medium": (44_208_104, 6.659),
    "pvt-large": (61_369_320, 9.814),
    "pvt-v2-b0": (3_666_760, 0.566),
    "pvt-v2-b1": (14_009_000, 2.108),
    "pvt-v2-b2": (25_362_856, 4.027),
    "pvt-v2-b2-li": (22_553_512, 3.889),
    "pvt-v2-b3": (45_238_696, 6.897),
    "pvt-v2-b4": (62_556_072, 10.101),
    "pvt-v2-b5": (81_956_008, 11.717),
}


def test_every_published_variant_is_a_preset():
    assert set(PRESETS) == set(OFFICIAL) == set(IMAGENET)


def meta_model(name, **overrides):
    with torch.device("meta"):
        return PvtForImageClassification(PvtConfig.from_preset(name, **overrides))


@pytest.mark.parametrize("name", OFFICIAL)
def test_parameter_count_equals_official_code(name):
    model = meta_model(name)
    assert model.config.num_labels == 1000
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL[name][0]


@pytest.mark.parametrize("name", OFFICIAL)
def test_macs_match_paper_gflops(name):
    macs = count_macs(meta_model(name)) / 1e9
    official_code, paper = OFFICIAL[name][1], IMAGENET[name].gflops
    assert macs == pytest.approx(official_code, abs=5e-4)
    # within 3% of the paper, or the paper's one-decimal figure is ours rounded (b0: 0.566 is printed as 0.6)
    assert macs == pytest.approx(paper, rel=0.03) or round(macs, 1) == paper


def official_interpolation(table, grid, height, width):
    """The official dense-prediction code's `_get_pos_embed`, verbatim in its arithmetic."""
    return (
        F.interpolate(table.reshape(1, grid, grid, -1).permute(0, 3, 1, 2), size=(height, width), mode="bilinear")
        .reshape(1, -1, height * width)
        .permute(0, 2, 1)
    )


def convert_from(reference, config, task="classification"):
    state_dict, config, report = convert_state_dict(reference.state_dict(), "transformers", task=task, config=config)
    assert report.ok and not report.unused_keys
    model = (PvtForImageClassification if task == "classification" else PvtBackbone)(config).eval()
    model.load_state_dict(state_dict, strict=True)
    return model


def assert_logits_match_transformers(config, sizes, batch):
    reference = transformers_reference(config)
    model = convert_from(reference, config)
    for height, width in sizes:
        pixels = torch.randn(batch, 3, height, width)
        if config.absolute_pos_embed and (height, width) != (config.image_size, config.image_size):
            give_transformers_v1_tables(reference, config, height, width)
        with torch.no_grad():
            expected, actual = reference(pixels).logits, model(pixels).logits
        assert actual.shape == expected.shape
        torch.testing.assert_close(actual, expected, atol=1e-4, rtol=0)
        assert expected.abs().max() > 1e-3  # a meaningful comparison, not of zeros


def test_tiny_logits_match_transformers(family):
    assert_logits_match_transformers(tiny_config(family), [(224, 224), (256, 320)], batch=2)


@pytest.mark.parametrize("name", ["pvt-small", "pvt-v2-b2-li"])
def test_full_size_logits_match_transformers(name):
    assert_logits_match_transformers(PvtConfig.from_preset(name), [(224, 224), (256, 320)], batch=1)


@pytest.mark.parametrize("family", ["v2", "v2-li"])
def test_backbone_feature_maps_match_transformers(family):
    config = tiny_config(family, out_features=["stage1", "stage2", "stage3", "stage4"])
    reference = transformers_reference(config, task="backbone")
    model = convert_from(reference, config, task="backbone")
    for size in [(224, 224), (256, 320)]:
        pixels = torch.randn(2, 3, *size)
        with torch.no_grad():
            expected, actual = reference(pixels).feature_maps, model(pixels).feature_maps
        for exp, act in zip(expected, actual, strict=True):
            torch.testing.assert_close(act, exp, atol=1e-4, rtol=0)


def test_v1_backbone_is_the_dense_prediction_trunk():
    """v1's dense backbone: stages 1-3 equal the classification trunk's, stage 4 runs without the class token and
    without the final LayerNorm."""
    config = tiny_config("v1", out_features=["stage1", "stage2", "stage3", "stage4"])
    classifier = PvtForImageClassification(config).eval()
    backbone = PvtBackbone(config).eval()
    missing, unexpected = backbone.load_state_dict(
        {k.removeprefix("pvt."): v for k, v in classifier.state_dict().items() if k.startswith("pvt.encoder.")}
    )
    assert not missing and not unexpected
    pixels = torch.randn(1, 3, 160, 192)
    with torch.no_grad():
        trunk = classifier.pvt(pixels, output_hidden_states=True).hidden_states
        maps = backbone(pixels).feature_maps
    for i in range(3):
        torch.testing.assert_close(maps[i], trunk[i])
    stage4 = backbone.encoder.stages[3]
    with torch.no_grad():
        tokens, height, width, _ = stage4(maps[2])  # no class token
    torch.testing.assert_close(maps[3], tokens.transpose(1, 2).reshape_as(maps[3]))
    assert not torch.allclose(maps[3], trunk[3])  # the class token changes stage 4 of the classifier


def test_position_embedding_interpolation_is_the_official_formula():
    config = tiny_config("v1")
    model = PvtForImageClassification(config)
    embedding = model.pvt.encoder.stages[0].position_embedding
    expected = official_interpolation(embedding.table.detach(), embedding.grid_size, 37, 51)

    def zeros(height, width, prefix=0):  # tokens of zeros: the module's output is then the embedding itself
        return torch.zeros(
            1, prefix + height * width, embedding.table.shape[-1] if not prefix else last.table.shape[-1]
        )

    last = model.pvt.encoder.stages[3].position_embedding
    torch.testing.assert_close(embedding(zeros(37, 51), 37, 51, with_cls_token=False), expected)
    # at the native grid the table is used as is; the class token's row leads the last stage's table
    assert torch.equal(embedding(zeros(56, 56), 56, 56, with_cls_token=False), embedding.table)
    assert torch.equal(last(zeros(7, 7, 1), 7, 7, with_cls_token=True), last.table)


def test_mac_count_includes_fused_attention():
    """FlopCounterMode misses CPU's fused SDPA kernel; count_macs must not (eager attention is the reference)."""
    sdpa = PvtForImageClassification(tiny_config("v1"))
    eager = PvtForImageClassification(tiny_config("v1", attn_implementation="eager"))
    assert count_macs(sdpa, 96, 128) == count_macs(eager, 96, 128)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        eager.eval()(torch.zeros(1, 3, 96, 128))
    assert count_macs(sdpa, 96, 128) == counter.get_total_flops() // 2


def test_sdpa_and_eager_attention_agree(family, monkeypatch):
    monkeypatch.setattr(PvtAttention, "matmul_max_keys", 0)  # SDPA even over few keys (see test_numerics)
    config = tiny_config(family)
    sdpa = PvtForImageClassification(config).eval()
    eager = PvtForImageClassification(tiny_config(family, attn_implementation="eager")).eval()
    eager.load_state_dict(sdpa.state_dict())
    assert sdpa.config._attn_implementation == "sdpa" and eager.config._attn_implementation == "eager"
    pixels = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        torch.testing.assert_close(sdpa(pixels).logits, eager(pixels).logits, atol=1e-5, rtol=0)


def test_save_load_round_trip_is_exact(tmp_path, family):
    model = PvtForImageClassification(tiny_config(family)).eval()
    model.save_pretrained(tmp_path)
    loaded = PvtForImageClassification.from_pretrained(tmp_path).eval()
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    pixels = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(model(pixels).logits, loaded(pixels).logits)
