"""The PVT papers' COCO detectors, RetinaNet and Mask R-CNN, built on torchvision.models.detection (its FPN, heads,
anchor matching, box coding, focal loss, RPN, RoI heads, NMS) with the official mmdetection 2.13 configs' settings.

Where torchvision's pieces differ from mmdetection's in what a checkpoint computes, the small piece is replaced here:
anchors (mmdetection's are not rounded and sit at the configured strides, not at image size // feature size),
RetinaNet's P7 (no ReLU after P6), RoIAlign (mmcv's `aligned=True`) and the RPN's box loss (L1). The differences kept
are listed in README.md ("What differs from mmdetection").

Shipped as remote code next to saved models: relative imports only; the folder needs torchvision (imported at the top,
so transformers' remote-code check names it when it is missing).
"""

import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.retinanet import RetinaNet, RetinaNetHead
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign, box_convert, roi_align
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, LastLevelMaxPool
from torchvision.ops.poolers import _convert_to_roi_format, initLevelMapper
from transformers import initialization as init
from transformers.modeling_utils import PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_pvt_detectors import PvtMaskRCNNConfig, PvtRetinaNetConfig
from .modeling_pvt import PvtBackbone, PvtLoadingMixin

SIZE_DIVISOR = 32  # mmdetection's Pad(size_divisor=32): every FPN level then has an integral stride


class MmdetAnchorGenerator(AnchorGenerator):
    """torchvision's anchor generator with mmdetection 2.x's anchors: cell anchors of exactly the configured sizes
    (torchvision rounds them to integers) placed at the configured strides (torchvision derives a level's stride as
    image size // feature size, which is off for the odd-sized coarse levels)."""

    def __init__(self, sizes: list[list[float]], aspect_ratios: list[float], strides: list[int]):
        super().__init__(tuple(tuple(s) for s in sizes), (tuple(aspect_ratios),) * len(sizes))
        self.strides = strides

    def generate_anchors(self, scales, aspect_ratios, dtype=torch.float32, device="cpu"):
        scales = torch.as_tensor(scales, dtype=dtype, device=device)
        h_ratios = torch.sqrt(torch.as_tensor(aspect_ratios, dtype=dtype, device=device))
        ws = (scales[None, :] / h_ratios[:, None]).reshape(-1)  # ratio-major, as mmdetection's scale_major=True
        hs = (scales[None, :] * h_ratios[:, None]).reshape(-1)
        return torch.stack([-ws, -hs, ws, hs], dim=1) / 2

    def forward(self, image_list: ImageList, feature_maps: list[torch.Tensor]) -> list[torch.Tensor]:
        device = feature_maps[0].device
        self.set_cell_anchors(feature_maps[0].dtype, device)
        strides = [[torch.tensor(s, device=device)] * 2 for s in self.strides]
        anchors = torch.cat(self.grid_anchors([list(f.shape[-2:]) for f in feature_maps], strides))
        return [anchors] * len(image_list.image_sizes)


class P6P7FromC5(ExtraFPNBlock):
    """RetinaNet's extra levels as mmdetection's FPN(add_extra_convs='on_input'): P6 a 3x3 stride-2 conv of C5, P7 a
    3x3 stride-2 conv of P6 (relu_before_extra_convs=False: torchvision's LastLevelP6P7 puts a ReLU there)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.p6 = nn.Conv2d(in_channels, out_channels, 3, 2, 1)
        self.p7 = nn.Conv2d(out_channels, out_channels, 3, 2, 1)

    def forward(self, results, inputs, names):
        p6 = self.p6(inputs[-1])
        return [*results, p6, self.p7(p6)], [*names, "p6", "p7"]


class AlignedMultiScaleRoIAlign(MultiScaleRoIAlign):
    """torchvision's multi-scale RoIAlign with mmcv's `aligned=True` (pixel centres at +0.5), as mmdetection's
    SingleRoIExtractor samples; level k = floor(4 + log2(sqrt(area) / 224)) is mmdetection's finest-scale-56 rule.
    Fixed strides, as mmdetection's (torchvision infers them per call from unpadded sizes: wrong for small inputs)."""

    def __init__(self, featmap_names: list[str], output_size: int, sampling_ratio: int, strides=(4, 8, 16, 32)):
        super().__init__(featmap_names, output_size, sampling_ratio)
        self.scales, low, high = [1.0 / s for s in strides], int(math.log2(strides[0])), int(math.log2(strides[-1]))
        self.map_levels = initLevelMapper(low, high, self.canonical_scale, self.canonical_level)

    def forward(self, x: dict[str, torch.Tensor], boxes: list[torch.Tensor], image_shapes: list[tuple[int, int]]):
        features = [x[name] for name in self.featmap_names]
        rois = _convert_to_roi_format(boxes)
        levels = self.map_levels(boxes)
        result = features[0].new_zeros((len(rois), features[0].shape[1], *self.output_size))
        for level, (feature, scale) in enumerate(zip(features, self.scales, strict=True)):
            index = torch.where(levels == level)[0]
            result[index] = roi_align(
                feature, rois[index], self.output_size, scale, self.sampling_ratio, aligned=True
            ).to(result.dtype)
        return result


class L1RegionProposalNetwork(RegionProposalNetwork):
    """torchvision's RPN with mmdetection's box loss, L1 (torchvision: smooth L1 with beta 1/9), averaged over the
    sampled anchors like the objectness loss."""

    def compute_loss(self, objectness, pred_bbox_deltas, labels, regression_targets):
        sampled_pos, sampled_neg = self.fg_bg_sampler(labels)
        sampled_pos = torch.where(torch.cat(sampled_pos))[0]
        sampled = torch.cat([sampled_pos, torch.where(torch.cat(sampled_neg))[0]])
        labels, regression_targets = torch.cat(labels), torch.cat(regression_targets)
        box_loss = F.l1_loss(pred_bbox_deltas[sampled_pos], regression_targets[sampled_pos], reduction="sum")
        objectness_loss = F.binary_cross_entropy_with_logits(objectness.flatten()[sampled], labels[sampled])
        return objectness_loss, box_loss / sampled.numel()


class _Channels(nn.Module):
    """Stands in for the backbone that torchvision's RetinaNet container wants to hold (it reads `out_channels`);
    the PVT and its FPN live beside it on the model, which runs them itself."""

    def __init__(self, out_channels: int):
        super().__init__()
        self.out_channels = out_channels


@dataclass
class PvtDetectionOutput(ModelOutput):
    """
    loss: the sum of `loss_dict` (training, with `labels`).
    loss_dict: each loss by name (RetinaNet: classification, bbox_regression; Mask R-CNN: loss_objectness,
        loss_rpn_box_reg, loss_classifier, loss_box_reg, loss_mask).
    boxes, scores, labels: per image (inference), the detections as (x1, y1, x2, y2) pixels of the input
        (`pixel_values`, before any padding), their scores and class ids (0-based, `config.id2label`).
    masks: Mask R-CNN, per image, each detection's 28x28 mask probabilities inside its box (`(n, 1, 28, 28)`); the
        image processor pastes them into the image.
    image_sizes: (batch, 2) height and width of each image inside `pixel_values` (read off `pixel_mask`).
    feature_maps: the FPN levels, finest first.
    """

    loss: torch.Tensor | None = None
    loss_dict: dict[str, torch.Tensor] | None = None
    boxes: list[torch.Tensor] | None = None
    scores: list[torch.Tensor] | None = None
    labels: list[torch.Tensor] | None = None
    masks: list[torch.Tensor] | None = None
    image_sizes: torch.Tensor | None = None
    feature_maps: tuple[torch.Tensor, ...] | None = None


class PvtDetectorPreTrainedModel(PvtLoadingMixin, PreTrainedModel):
    """PVT + FPN + a torchvision detection head. Input: `pixel_values` as the image processor makes them (resized,
    normalised, batched with a `pixel_mask`); the model pads them to a multiple of 32 as mmdetection does. `labels`:
    per image a dict of `class_labels` (ids 0..num_labels-1) and `boxes` (cx, cy, w, h normalised by the size of
    `pixel_values`, the padded batch, as the image processor writes them), plus `masks` for Mask R-CNN."""

    base_model_prefix = "backbone"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["PvtBlock"]

    def _build_neck(self, config, in_stages: slice, extra_blocks: ExtraFPNBlock) -> None:
        self.backbone = PvtBackbone(config.backbone_config)
        self.in_stages = in_stages
        self.neck = FeaturePyramidNetwork(self.backbone.channels[in_stages], config.fpn_channels, extra_blocks)

    def fpn_features(self, pixel_values: torch.Tensor) -> OrderedDict:
        """The FPN levels (finest first) of `pixel_values` as they are (no padding)."""
        stages = self.backbone(pixel_values).feature_maps[self.in_stages]
        return self.neck(OrderedDict((str(i), f) for i, f in enumerate(stages)))

    def _inputs(self, pixel_values, pixel_mask, labels):
        """Padded pixels, the images' sizes inside them and the targets in torchvision's form (absolute xyxy)."""
        if pixel_values.ndim != 4:
            raise ValueError(f"pixel_values must be (batch, channels, height, width), got {tuple(pixel_values.shape)}")
        height, width = pixel_values.shape[-2:]
        if pixel_mask is None:
            sizes = torch.tensor([[height, width]] * len(pixel_values), device=pixel_values.device)
        else:
            sizes = torch.stack([pixel_mask[:, :, 0].sum(1), pixel_mask[:, 0, :].sum(1)], dim=1)
        pad = (0, -width % SIZE_DIVISOR, 0, -height % SIZE_DIVISOR)
        padded = F.pad(pixel_values, pad) if any(pad) else pixel_values  # no copy of an already padded batch
        targets = None
        if labels is not None:
            if len(labels) != len(pixel_values):
                raise ValueError(f"got {len(labels)} targets for {len(pixel_values)} images: one dict per image")
            targets = [self._target(t, (height, width), padded.shape[-2:]) for t in labels]
        return padded, sizes, targets

    def _target(self, target: dict, canvas: tuple[int, int], padded_size) -> dict:
        """torchvision's target: boxes in pixels (the processor normalises them by the batch's padded canvas, the
        size of `pixel_values`, as transformers' DETR processor does), class ids shifted by `label_offset`."""
        classes, boxes = target["class_labels"], target["boxes"]
        if boxes.ndim != 2 or boxes.shape[-1] != 4 or boxes.shape[0] != classes.shape[0]:
            raise ValueError(
                f"labels' boxes must have shape ({classes.shape[0]}, 4) (normalised cx, cy, w, h), got "
                f"{tuple(boxes.shape)}"
            )
        if classes.numel() and (classes.min() < 0 or classes.max() >= self.config.num_labels):
            raise ValueError(f"labels' class_labels hold ids outside [0, {self.config.num_labels}): {classes.tolist()}")
        (h, w), xyxy = canvas, box_convert(boxes.float(), "cxcywh", "xyxy")
        boxes = xyxy * xyxy.new_tensor([w, h, w, h])
        return {"boxes": boxes, "labels": classes.long() + self.label_offset, **self._target_masks(target, padded_size)}

    label_offset = 0  # torchvision's class id of label 0

    def _target_masks(self, target: dict, padded_size) -> dict:
        return {}

    def _init_conv(self, module: nn.Module, rule: str) -> None:
        if rule == "xavier_uniform":
            init.xavier_uniform_(module.weight)
        elif rule == "xavier_normal":
            init.xavier_normal_(module.weight)
        elif rule == "kaiming":
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        else:
            init.normal_(module.weight, 0.0, float(rule))
        if module.bias is not None:
            init.zeros_(module.bias)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """The heads as mmdetection initialises them (the rule `_set_init_rules` put on each layer); the backbone
        keeps PVT's own."""
        rule = getattr(module, "_mmdet_init", None)
        if rule is not None:
            self._init_conv(module, rule)
            if getattr(module, "_mmdet_prior_bias", False):
                prior = self.config.prior_probability
                init.constant_(module.bias, -math.log((1 - prior) / prior))

    @staticmethod
    def _set_init_rules(rules: list[tuple[nn.Module, str]]) -> None:
        """Puts on every layer inside each module its rule: xavier_uniform, xavier_normal, kaiming (normal, fan-out,
        ReLU) or a normal's standard deviation (an attribute of the layer, so it survives copies)."""
        for owner, rule in rules:
            for m in owner.modules():
                if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                    m._mmdet_init = rule


class PvtRetinaNetForObjectDetection(PvtDetectorPreTrainedModel):
    """RetinaNet on PVT (`retinanet_pvt_*_fpn_1x_coco`): torchvision's RetinaNet head, matcher, focal / L1 losses and
    post-processing on PVT stages 2-4 + FPN with P6 / P7 from C5."""

    config_class = PvtRetinaNetConfig

    def __init__(self, config: PvtRetinaNetConfig):
        super().__init__(config)
        channels = config.fpn_channels
        self._build_neck(config, slice(1, None), None)
        self.neck.extra_blocks = P6P7FromC5(self.backbone.channels[-1], channels)
        num_anchors = len(config.anchor_ratios) * config.scales_per_octave
        head = RetinaNetHead(channels, num_anchors, config.num_labels)  # sigmoid focal loss, alpha 0.25, gamma 2
        head.classification_head.conv = head.classification_head.conv[: config.num_head_convs]
        head.regression_head.conv = head.regression_head.conv[: config.num_head_convs]
        self.retinanet = RetinaNet(
            _Channels(channels),
            config.num_labels,
            anchor_generator=MmdetAnchorGenerator(config.anchor_sizes, config.anchor_ratios, [8, 16, 32, 64, 128]),
            head=head,
            score_thresh=config.score_threshold,
            nms_thresh=config.nms_iou_threshold,
            detections_per_img=config.detections_per_image,
            fg_iou_thresh=config.positive_iou_threshold,
            bg_iou_thresh=config.negative_iou_threshold,
            topk_candidates=config.candidates_per_level,
        )
        self._set_init_rules([(self.neck, "xavier_uniform"), (head, "0.01")])
        head.classification_head.cls_logits._mmdet_prior_bias = True  # focal loss's prior: foreground at 0.01
        self.post_init()

    def head_outputs(self, features: list[torch.Tensor]) -> dict[str, list[torch.Tensor]]:
        """Per FPN level, the class logits (batch, H*W*A, classes) and box deltas (batch, H*W*A, 4), anchors in
        mmdetection's order (location-major, then ratio, then scale)."""
        outputs = self.retinanet.head(features)
        counts = [
            f.shape[-2] * f.shape[-1] * self.retinanet.anchor_generator.num_anchors_per_location()[0] for f in features
        ]
        return {k: list(v.split(counts, dim=1)) for k, v in outputs.items()}

    def forward(self, pixel_values, pixel_mask=None, labels=None, **kwargs) -> PvtDetectionOutput:
        padded, sizes, targets = self._inputs(pixel_values, pixel_mask, labels)
        features = list(self.fpn_features(padded).values())
        images = ImageList(padded, [tuple(s) for s in sizes.tolist()])
        anchors = self.retinanet.anchor_generator(images, features)
        output = PvtDetectionOutput(image_sizes=sizes, feature_maps=tuple(features))
        outputs = self.head_outputs(features)
        if targets is not None:
            whole = {k: torch.cat(v, dim=1) for k, v in outputs.items()}
            output.loss_dict = self.retinanet.compute_loss(targets, whole, anchors)
            output.loss = sum(output.loss_dict.values())
        else:
            counts = [len(o[0]) for o in outputs["cls_logits"]]
            per_level = [list(a.split(counts)) for a in anchors]
            detections = self.retinanet.postprocess_detections(outputs, per_level, images.image_sizes)
            output.boxes, output.scores, output.labels = (
                [d[k] for d in detections] for k in ("boxes", "scores", "labels")
            )
        return output


class PvtMaskRCNNForInstanceSegmentation(PvtDetectorPreTrainedModel):
    """Mask R-CNN on PVT (`mask_rcnn_pvt_*_fpn_1x_coco`): torchvision's RPN, RoI heads (2-FC box head, 4-conv mask
    head) and losses on PVT stages 1-4 + FPN with a max-pooled P6. torchvision's classes put background at index 0:
    label i is its class i + 1."""

    config_class = PvtMaskRCNNConfig
    label_offset = 1

    def __init__(self, config: PvtMaskRCNNConfig):
        super().__init__(config)
        channels = config.fpn_channels
        self._build_neck(config, slice(None), LastLevelMaxPool())
        anchors = MmdetAnchorGenerator(config.anchor_sizes, config.anchor_ratios, [4, 8, 16, 32, 64])
        rpn_head = RPNHead(channels, len(config.anchor_ratios))
        self.rpn = L1RegionProposalNetwork(
            anchors,
            rpn_head,
            config.rpn_positive_iou_threshold,
            config.rpn_negative_iou_threshold,
            config.rpn_samples_per_image,
            config.rpn_positive_fraction,
            dict(training=config.rpn_pre_nms_train, testing=config.rpn_pre_nms_test),
            dict(training=config.rpn_post_nms, testing=config.rpn_post_nms),
            config.rpn_nms_iou_threshold,
        )
        levels = ["0", "1", "2", "3"]
        num_classes = config.num_labels + 1
        box_head = TwoMLPHead(channels * 7 * 7, config.representation_size)
        box_predictor = FastRCNNPredictor(config.representation_size, num_classes)
        mask_head = MaskRCNNHeads(channels, [channels] * config.num_mask_convs, 1)
        mask_predictor = MaskRCNNPredictor(channels, channels, num_classes)
        self.roi_heads = RoIHeads(
            AlignedMultiScaleRoIAlign(levels, 7, sampling_ratio=0),
            box_head,
            box_predictor,
            config.roi_positive_iou_threshold,
            config.roi_negative_iou_threshold,
            config.roi_samples_per_image,
            config.roi_positive_fraction,
            (10.0, 10.0, 5.0, 5.0),  # mmdetection's target_stds (0.1, 0.1, 0.2, 0.2)
            config.score_threshold,
            config.nms_iou_threshold,
            config.detections_per_image,
            mask_roi_pool=AlignedMultiScaleRoIAlign(levels, 14, sampling_ratio=0),
            mask_head=mask_head,
            mask_predictor=mask_predictor,
        )
        self._set_init_rules(
            [
                (self.neck, "xavier_uniform"),
                (rpn_head, "0.01"),
                (box_head, "xavier_normal"),
                (box_predictor.cls_score, "0.01"),
                (box_predictor.bbox_pred, "0.001"),
                (mask_head, "kaiming"),
                (mask_predictor, "kaiming"),
            ]
        )
        self.post_init()

    def _target_masks(self, target: dict, padded_size) -> dict:
        masks = target.get("masks")
        if masks is None:
            raise ValueError("Mask R-CNN's labels need `masks` (objects, height, width) beside boxes and class_labels")
        if masks.ndim != 3 or masks.shape[0] != target["class_labels"].shape[0]:
            raise ValueError(f"labels' masks must be (objects, height, width), got {tuple(masks.shape)}")
        height, width = padded_size
        masks = masks[:, :height, :width]
        return {"masks": F.pad(masks.float(), (0, width - masks.shape[-1], 0, height - masks.shape[-2]))}

    def forward(self, pixel_values, pixel_mask=None, labels=None, **kwargs) -> PvtDetectionOutput:
        padded, sizes, targets = self._inputs(pixel_values, pixel_mask, labels)
        features = self.fpn_features(padded)
        images = ImageList(padded, [tuple(s) for s in sizes.tolist()])
        proposals, rpn_losses = self.rpn(images, features, targets)
        detections, roi_losses = self.roi_heads(features, proposals, images.image_sizes, targets)
        output = PvtDetectionOutput(image_sizes=sizes, feature_maps=tuple(features.values()))
        if targets is not None:
            output.loss_dict = {**rpn_losses, **roi_losses}
            output.loss = sum(output.loss_dict.values())
        else:
            output.boxes, output.scores, output.masks = (
                [d[k] for d in detections] for k in ("boxes", "scores", "masks")
            )
            output.labels = [d["labels"] - 1 for d in detections]
        return output

    def save_pretrained(self, save_directory, *args, **kwargs):
        # pipeline("image-segmentation") loads through AutoModelForImageSegmentation; both entries serve remote code
        self.config.auto_map = {
            **(getattr(self.config, "auto_map", None) or {}),
            "AutoModelForImageSegmentation": f"{self.__module__.split('.')[-1]}.{type(self).__name__}",
            "AutoModelForInstanceSegmentation": f"{self.__module__.split('.')[-1]}.{type(self).__name__}",
        }
        super().save_pretrained(save_directory, *args, **kwargs)


__all__ = ["PvtDetectionOutput", "PvtMaskRCNNForInstanceSegmentation", "PvtRetinaNetForObjectDetection"]
