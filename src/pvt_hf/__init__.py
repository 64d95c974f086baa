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
    AutoModelForImageSegmentation,
    AutoModelForInstanceSegmentation,
    AutoModelForObjectDetection,
    AutoModelForSemanticSegmentation,
    AutoModelForUniversalSegmentation,
    AutoVideoProcessor,
)
from transformers.utils import logging

from .configuration_pvt import PRESETS, PvtConfig, imagenet_1k_labels
from .configuration_pvt_detectors import DETECTOR_PRESETS, PvtMaskRCNNConfig, PvtRetinaNetConfig
from .configuration_pvt_heads import (
    DETECTION_PRESETS,
    SEGMENTATION_PRESETS,
    PvtDeformableDetrConfig,
    PvtDetrConfig,
    PvtSegmentationConfig,
    ade20k_labels,
    coco_labels,
)
from .configuration_pvt_mask2former import MASK2FORMER_PRESETS, PvtMask2FormerConfig
from .flops import count_macs
from .image_processing_pvt import (
    PvtDeformableDetrImageProcessor,
    PvtDetrImageProcessor,
    PvtHfImageProcessor,
    PvtSegmentationImageProcessor,
)
from .image_processing_pvt_detectors import PvtDetectorImageProcessor
from .image_processing_pvt_mask2former import PvtMask2FormerImageProcessor
from .modeling_pvt import PvtBackbone, PvtForImageClassification, PvtModel, PvtPreTrainedModel
from .modeling_pvt_detectors import (
    PvtDetectionOutput,
    PvtMaskRCNNForInstanceSegmentation,
    PvtRetinaNetForObjectDetection,
)
from .modeling_pvt_heads import PvtDeformableDetrForObjectDetection, PvtForObjectDetection, PvtForSemanticSegmentation
from .modeling_pvt_mask2former import PvtMask2FormerForUniversalSegmentation
from .visualization import draw_detections, draw_segmentation

__version__ = "0.1.0"

# (config, Auto model class, model, image processor) for every model of the family
_MODELS = [
    (PvtConfig, AutoModel, PvtModel, PvtHfImageProcessor),
    (PvtConfig, AutoModelForImageClassification, PvtForImageClassification, PvtHfImageProcessor),
    (PvtConfig, AutoBackbone, PvtBackbone, PvtHfImageProcessor),
    (
        PvtSegmentationConfig,
        AutoModelForSemanticSegmentation,
        PvtForSemanticSegmentation,
        PvtSegmentationImageProcessor,
    ),
    (PvtDetrConfig, AutoModelForObjectDetection, PvtForObjectDetection, PvtDetrImageProcessor),
    (
        PvtDeformableDetrConfig,
        AutoModelForObjectDetection,
        PvtDeformableDetrForObjectDetection,
        PvtDeformableDetrImageProcessor,
    ),
    (PvtRetinaNetConfig, AutoModelForObjectDetection, PvtRetinaNetForObjectDetection, PvtDetectorImageProcessor),
    # pipeline("image-segmentation") loads through AutoModelForImageSegmentation; the last entry is the saved auto class
    *(
        (PvtMask2FormerConfig, auto, PvtMask2FormerForUniversalSegmentation, PvtMask2FormerImageProcessor)
        for auto in (AutoModelForImageSegmentation, AutoModelForUniversalSegmentation)
    ),
    *(
        (PvtMaskRCNNConfig, auto, PvtMaskRCNNForInstanceSegmentation, PvtDetectorImageProcessor)
        for auto in (AutoModelForImageSegmentation, AutoModelForInstanceSegmentation)
    ),
]


# transformers' lazy mappings also match config classes by name, and its v1 config is called PvtConfig too: register
# our processors for every backend so none falls through to transformers' PVT processor (whose lookup, here, warns
# about torchvision; that warning is spurious for us).
# PVT takes images, never videos, yet pipeline() probes AutoVideoProcessor for every vision task, which derives a
# remote "PvtHfVideoProcessor" from the folder's AutoImageProcessor auto_map. Registering each config with no video
# processor (the entry transformers itself keeps for a model whose video backend is missing) tells the probe the
# model is local: it answers "no video processor" instead of asking whether to trust remote code.
def _register_with_auto_classes() -> None:
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        for config, auto, model, processor in _MODELS:
            AutoConfig.register(config.model_type, config, exist_ok=True)
            auto.register(config, model, exist_ok=True)
            AutoImageProcessor.register(
                config, image_processor_classes={"pil": processor, "torchvision": processor}, exist_ok=True
            )
            AutoVideoProcessor.register(config, video_processor_classes={"torchvision": None}, exist_ok=True)
            config.register_for_auto_class()
            model.register_for_auto_class(auto.__name__)
            processor.register_for_auto_class("AutoImageProcessor")
    finally:  # transformers' verbosity is the user's: restored even if a registration fails
        logging.set_verbosity(verbosity)


_register_with_auto_classes()

__all__ = [
    "DETECTION_PRESETS",
    "DETECTOR_PRESETS",
    "MASK2FORMER_PRESETS",
    "PRESETS",
    "SEGMENTATION_PRESETS",
    "PvtBackbone",
    "PvtConfig",
    "PvtDeformableDetrConfig",
    "PvtDeformableDetrForObjectDetection",
    "PvtDeformableDetrImageProcessor",
    "PvtDetectionOutput",
    "PvtDetectorImageProcessor",
    "PvtDetrConfig",
    "PvtDetrImageProcessor",
    "PvtForImageClassification",
    "PvtForObjectDetection",
    "PvtForSemanticSegmentation",
    "PvtHfImageProcessor",
    "PvtMask2FormerConfig",
    "PvtMask2FormerForUniversalSegmentation",
    "PvtMask2FormerImageProcessor",
    "PvtMaskRCNNConfig",
    "PvtMaskRCNNForInstanceSegmentation",
    "PvtModel",
    "PvtPreTrainedModel",
    "PvtRetinaNetConfig",
    "PvtRetinaNetForObjectDetection",
    "PvtSegmentationConfig",
    "PvtSegmentationImageProcessor",
    "ade20k_labels",
    "coco_labels",
    "count_macs",
    "draw_detections",
    "draw_segmentation",
    "imagenet_1k_labels",
]
