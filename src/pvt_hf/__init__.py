"""pvt_hf: the Pyramid Vision Transformer family (v1 and v2) as a Hugging Face Transformers model package.

Importing the package registers its classes with transformers' Auto classes, and marks them for remote code so
that `save_pretrained` writes the modeling code and an `auto_map` next to the weights.
"""

from transformers import (
    AutoBackbone,
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
)
from transformers.utils import logging

from .configuration_pvt import PRESETS, PvtConfig, imagenet_1k_labels
from .flops import count_macs
from .image_processing_pvt import PvtHfImageProcessor
from .modeling_pvt import PvtBackbone, PvtForImageClassification, PvtModel, PvtPreTrainedModel


__version__ = "0.1.0"

AutoConfig.register(PvtConfig.model_type, PvtConfig, exist_ok=True)
AutoModel.register(PvtConfig, PvtModel, exist_ok=True)
AutoModelForImageClassification.register(PvtConfig, PvtForImageClassification, exist_ok=True)
AutoBackbone.register(PvtConfig, PvtBackbone, exist_ok=True)
# transformers' lazy mappings also match config classes by name, and its v1 config is called PvtConfig too: register
# our processor for every backend so none falls through to transformers' PVT processor (whose lookup, here, warns
# about torchvision; that warning is spurious for us).
_verbosity = logging.get_verbosity()
logging.set_verbosity_error()
AutoImageProcessor.register(
    PvtConfig, image_processor_classes={"pil": PvtHfImageProcessor, "torchvision": PvtHfImageProcessor}, exist_ok=True
)
logging.set_verbosity(_verbosity)

PvtConfig.register_for_auto_class()
PvtModel.register_for_auto_class("AutoModel")
PvtForImageClassification.register_for_auto_class("AutoModelForImageClassification")
PvtBackbone.register_for_auto_class("AutoBackbone")
PvtHfImageProcessor.register_for_auto_class("AutoImageProcessor")

__all__ = [
    "PRESETS",
    "PvtBackbone",
    "PvtConfig",
    "PvtForImageClassification",
    "PvtHfImageProcessor",
    "PvtModel",
    "PvtPreTrainedModel",
    "count_macs",
    "imagenet_1k_labels",
]
