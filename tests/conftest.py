import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

import pvt_hf  # noqa: E402,F401
from pvt_hf import PvtConfig  # noqa: E402

TINY = dict(depths=[1, 1, 2, 1], hidden_sizes=[16, 32, 40, 64], num_attention_heads=[1, 2, 5, 8], mlp_ratios=[2, 2, 2, 2])
FAMILIES = {"v1": "pvt-tiny", "v2": "pvt-v2-b0", "v2-li": "pvt-v2-b2-li"}


def tiny_config(family: str = "v2", **overrides) -> PvtConfig:
    """A few-thousand-parameter config with all the switches of `family` ("v1", "v2", "v2-li")."""
    return PvtConfig.from_preset(FAMILIES[family], **{**TINY, "num_labels": 10, **overrides})


@pytest.fixture(params=list(FAMILIES))
def family(request):
    return request.param


def transformers_reference(config: PvtConfig, task: str = "classification"):
    """transformers' own model with `config`'s hyper-parameters and random weights (v1: Pvt*, v2: PvtV2*)."""
    common = dict(
        depths=config.depths,
        hidden_sizes=config.hidden_sizes,
        num_attention_heads=config.num_attention_heads,
        mlp_ratios=config.mlp_ratios,
        num_labels=config.num_labels,
        layer_norm_eps=config.layer_norm_eps,
    )
    if config.absolute_pos_embed:  # v1
        ref_config = transformers.PvtConfig(
            **common,
            patch_sizes=config.patch_sizes,
            strides=config.patch_sizes,
            sequence_reduction_ratios=config.sr_ratios,
            image_size=config.image_size,
        )
        model = transformers.PvtForImageClassification(ref_config)
    else:
        ref_config = transformers.PvtV2Config(
            **common,
            patch_sizes=[2 * p - 1 for p in config.patch_sizes],
            strides=config.patch_sizes,
            sr_ratios=config.sr_ratios,
            linear_attention=config.linear_sra,
            out_features=config.stage_names,
        )
        model_class = transformers.PvtV2Backbone if task == "backbone" else transformers.PvtV2ForImageClassification
        model = model_class(ref_config)
    with torch.no_grad():  # transformers initialises v1 position tables from randn: bring them to a sane scale
        for name, param in model.named_parameters():
            if "position_embeddings" in name or "cls_token" in name:
                param.normal_(0, 0.02)
    return model.eval()
