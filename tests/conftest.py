import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest  # noqa: E402
import torch  # noqa: E402

import pvt_hf  # noqa: E402,F401
from pvt_hf import PvtConfig, reference  # noqa: E402

TINY = dict(
    depths=[1, 1, 2, 1], hidden_sizes=[16, 32, 40, 64], num_attention_heads=[1, 2, 5, 8], mlp_ratios=[2, 2, 2, 2]
)
FAMILIES = {"v1": "pvt-tiny", "v2": "pvt-v2-b0", "v2-li": "pvt-v2-b2-li"}


def tiny_config(family: str = "v2", **overrides) -> PvtConfig:
    """A few-thousand-parameter config with all the switches of `family` ("v1", "v2", "v2-li")."""
    return PvtConfig.from_preset(FAMILIES[family], **{**TINY, "num_labels": 10, **overrides})


@pytest.fixture(params=list(FAMILIES))
def family(request):
    return request.param


def transformers_reference(config: PvtConfig, task: str = "classification"):
    """transformers' own model (v1: Pvt*, v2: PvtV2*) with `config`'s hyper-parameters and random weights."""
    model = reference.transformers_reference(config, task)
    with torch.no_grad():  # transformers initialises v1 position tables from randn: bring them to a sane scale
        for name, param in model.named_parameters():
            if "position_embeddings" in name or "cls_token" in name:
                param.normal_(0, 0.02)
    return model
