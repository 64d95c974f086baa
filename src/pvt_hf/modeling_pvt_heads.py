"""PVT for dense prediction: semantic segmentation (Semantic FPN, UperNet) and DETR / Deformable DETR detection.

Semantic FPN is written here (transformers has none), with mmcv's module names so the official mmsegmentation
weights map one to one; UperNet, DETR and Deformable DETR are transformers' own, taking `PvtBackbone`.
Shipped as remote code next to saved models: relative imports only.
"""

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoBackbone
from transformers import initialization as init
from transformers.modeling_outputs import SemanticSegmenterOutput
from transformers.modeling_utils import PreTrainedModel
from transformers.models.deformable_detr.modeling_deformable_detr import DeformableDetrForObjectDetection
from transformers.models.detr.modeling_detr import DetrForObjectDetection
from transformers.models.upernet.modeling_upernet import UperNetFCNHead, UperNetHead
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs

from .configuration_pvt_heads import PvtDeformableDetrConfig, PvtDetrConfig, PvtSegmentationConfig
from .modeling_pvt import PvtBackbone, PvtLoadingMixin


def register_backbone(config) -> None:
    """transformers' DETRs build their backbone through AutoBackbone, keyed by config class. Remote code loads the
    config and the modeling files as separate modules, so the backbone config may be an instance of a twin of
    `PvtConfig`: register whichever class it is (where pvt_hf is installed this is a no-op)."""
    AutoBackbone.register(type(config.backbone_config), PvtBackbone, exist_ok=True)


class ConvModule(nn.Module):
    """Conv [-> BatchNorm -> ReLU], with mmcv ConvModule's parameter names (`conv`, `bn`)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, norm_act: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=not norm_act)
        self.bn = nn.BatchNorm2d(out_channels) if norm_act else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return F.relu(self.bn(x), inplace=True) if self.bn is not None else x


class FpnNeck(nn.Module):
    """FPN: 1x1 lateral convs to a common width, top-down nearest-neighbour upsampling and sums, 3x3 output convs."""

    def __init__(self, in_channels: list[int], channels: int):
        super().__init__()
        self.lateral_convs = nn.ModuleList(ConvModule(c, channels, 1) for c in in_channels)
        self.fpn_convs = nn.ModuleList(ConvModule(channels, channels, 3) for _ in in_channels)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, features, strict=True)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[-2:], mode="nearest"
            )
        return [conv(lateral) for conv, lateral in zip(self.fpn_convs, laterals, strict=True)]


class SemanticFpnHead(nn.Module):
    """Semantic FPN's head (Kirillov et al.): per level, Conv3x3-BN-ReLU blocks each followed by 2x bilinear
    upsampling until stride 4 (one block at strides 4 and 8); the levels are summed, then dropout and a 1x1
    classifier."""

    def __init__(self, config: PvtSegmentationConfig, num_levels: int):
        super().__init__()
        self.scale_heads = nn.ModuleList()
        for level in range(num_levels):
            layers = []
            for k in range(max(1, level)):
                layers.append(
                    ConvModule(config.fpn_channels if k == 0 else config.hidden_size, config.hidden_size, 3, True)
                )
                if level > 0:
                    layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.scale_heads.append(nn.Sequential(*layers))
        self.dropout = nn.Dropout2d(config.classifier_dropout)
        self.classifier = nn.Conv2d(config.hidden_size, config.num_labels, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        output = self.scale_heads[0](features[0])
        for head, feature in zip(
            self.scale_heads[1:], features[1:], strict=True
        ):  # odd sizes: the 2x steps may overshoot
            output = output + F.interpolate(head(feature), size=output.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(self.dropout(output))


class PvtForSemanticSegmentation(PvtLoadingMixin, PreTrainedModel):
    """PVT + Semantic FPN (the papers' ADE20K setup) or transformers' UperNet head. Logits at stride 4; the loss is
    cross-entropy at the labels' resolution with `semantic_loss_ignore_index`, plus the optional auxiliary FCN loss."""

    config_class = PvtSegmentationConfig
    base_model_prefix = "backbone"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["PvtBlock"]

    def __init__(self, config: PvtSegmentationConfig):
        super().__init__(config)
        self.backbone = PvtBackbone(config.backbone_config)
        channels = self.backbone.channels
        if config.decode_head == "semantic_fpn":
            self.neck = FpnNeck(channels, config.fpn_channels)
            self.decode_head = SemanticFpnHead(config, len(channels))
        else:
            self.neck = None
            self.decode_head = UperNetHead(config, in_channels=channels)
        self.auxiliary_head = UperNetFCNHead(config, in_channels=channels) if config.use_auxiliary_head else None
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Semantic FPN as mmsegmentation's: neck convs Xavier-uniform, head convs Kaiming-normal (fan-out, ReLU; mmcv
        ConvModule's), classifiers normal(0, 0.01), zero biases, BatchNorm 1/0. UperNet (with its FCN auxiliary head)
        as transformers' own UperNet: every conv normal(0, initializer_range). The backbone keeps PVT's own.

        Dispatches on the leaf modules that hold the parameters: transformers skips modules without parameters of
        their own and, when loading, initialises only the parameters a checkpoint lacks (or whose size mismatched)."""
        if isinstance(module, nn.BatchNorm2d) or self.config.decode_head == "upernet":
            super()._init_weights(module)
        elif isinstance(module, nn.Conv2d):
            if any(module is getattr(head, "classifier", None) for head in (self.decode_head, self.auxiliary_head)):
                init.normal_(module.weight, 0.0, 0.01)
            elif any(module is conv for conv in self.neck.modules()):
                init.xavier_uniform_(module.weight)
            else:
                init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                init.zeros_(module.bias)

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> tuple | SemanticSegmenterOutput:
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        backbone_out = self.backbone(pixel_values, output_hidden_states=True, output_attentions=output_attentions)
        features = list(backbone_out.feature_maps)
        logits = self.decode_head(self.neck(features) if self.neck is not None else features)
        loss = None
        if labels is not None:
            self._check_labels(labels, pixel_values)
            loss = self.loss_function(  # transformers' ForSemanticSegmentationLoss: upsampled logits, cross-entropy
                logits,
                labels,
                ignore_index=self.config.semantic_loss_ignore_index,
                auxiliary_logits=self.auxiliary_head(features) if self.auxiliary_head is not None else None,
                auxiliary_loss_weight=self.config.auxiliary_loss_weight,
            )
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        output = SemanticSegmenterOutput(
            loss=loss,
            logits=logits,
            hidden_states=backbone_out.hidden_states if output_hidden_states else None,
            attentions=backbone_out.attentions,
        )
        return output if return_dict else output.to_tuple()

    def _check_labels(self, labels: torch.Tensor, pixel_values: torch.Tensor) -> None:
        if labels.ndim != 3 or labels.shape[0] != pixel_values.shape[0] or labels.shape[-2:] != pixel_values.shape[-2:]:
            raise ValueError(
                "labels must be label maps of shape (batch, height, width) = "
                f"{(pixel_values.shape[0], *pixel_values.shape[-2:])} matching pixel_values "
                f"{tuple(pixel_values.shape)}, got {tuple(labels.shape)}"
            )
        ignore = self.config.semantic_loss_ignore_index
        if not bool((((labels >= 0) & (labels < self.config.num_labels)) | (labels == ignore)).all()):  # one sync
            valid = labels[labels != ignore]
            raise ValueError(
                f"labels hold class ids outside [0, {self.config.num_labels}) "
                f"(found {valid.min().item()}..{valid.max().item()}); "
                f"pixels to ignore must be {self.config.semantic_loss_ignore_index}"
            )


def check_detection_labels(labels: list[dict] | None, num_labels: int) -> None:
    """DETR's matcher would fail deep inside (or index out of range) on bad targets: say what is wrong instead."""
    if not labels:
        return
    all_classes = torch.cat([target["class_labels"].flatten() for target in labels])
    in_range = bool(((all_classes >= 0) & (all_classes < num_labels)).all())  # one device sync per batch
    for i, target in enumerate(labels):
        classes, boxes = target["class_labels"], target["boxes"]
        if not in_range and classes.numel() and (classes.min() < 0 or classes.max() >= num_labels):
            raise ValueError(f"labels[{i}]['class_labels'] holds ids outside [0, {num_labels}): {classes.tolist()}")
        if boxes.ndim != 2 or boxes.shape[-1] != 4 or boxes.shape[0] != classes.shape[0]:
            raise ValueError(
                f"labels[{i}]['boxes'] must have shape ({classes.shape[0]}, 4) (normalised cx, cy, w, h), "
                f"got {tuple(boxes.shape)}"
            )


class PvtDetectionMixin(PvtLoadingMixin):
    """PVT glue for transformers' DETR models: the backbone registration remote code needs, and target checks."""

    def __init__(self, config):
        register_backbone(config)
        super().__init__(config)

    def forward(self, pixel_values, pixel_mask=None, labels=None, **kwargs: Unpack[TransformersKwargs]):
        # (typed as DETR's: transformers reads the options a model takes, output_attentions..., from this annotation)
        check_detection_labels(labels, self.config.num_labels)
        return super().forward(pixel_values, pixel_mask=pixel_mask, labels=labels, **kwargs)


class PvtForObjectDetection(PvtDetectionMixin, DetrForObjectDetection):
    """DETR with a PVT backbone (v1 paper, Table 6): transformers' DETR transformer, Hungarian matcher, losses and
    post-processing, with `PvtBackbone` in place of the ResNet."""

    config_class = PvtDetrConfig


class PvtDeformableDetrForObjectDetection(PvtDetectionMixin, DeformableDetrForObjectDetection):
    """Multi-scale detection: transformers' Deformable DETR on PVT stages 2-4."""

    config_class = PvtDeformableDetrConfig


__all__ = ["PvtDeformableDetrForObjectDetection", "PvtForObjectDetection", "PvtForSemanticSegmentation"]
