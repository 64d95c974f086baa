"""The image processor of PVT's RetinaNet and Mask R-CNN: mmdetection's test pipeline (shorter side 800, longer at
most 1333, ImageNet mean / std, which is mmdetection's `img_norm_cfg` of 0-255 values with `to_rgb`; the model pads to
a multiple of 32) through transformers' DETR processor, which also turns COCO annotations (with segmentation masks)
into targets; post-processing for the detectors' outputs.

Shipped as remote code next to saved models: relative imports only (needs torchvision, as the models do).
"""

import torch
from torchvision.models.detection.roi_heads import paste_masks_in_image

from .image_processing_pvt import PvtDetrImageProcessor


def _scale(outputs, index: int, target_sizes) -> tuple[torch.Tensor, tuple[int, int]]:
    """Image `index`'s boxes in the pixels of its target size (default: the model's input size)."""
    height, width = outputs.image_sizes[index].tolist()
    target = (height, width) if target_sizes is None else tuple(int(v) for v in target_sizes[index])
    factors = outputs.boxes[index].new_tensor([target[1] / width, target[0] / height] * 2)
    return outputs.boxes[index] * factors, target


class PvtDetectorImageProcessor(PvtDetrImageProcessor):
    """DETR's processor with the detectors' post-processing. (Its DETR-specific post-processing is not for these
    outputs: they carry boxes, scores, labels and masks, not logits over queries.)"""

    def post_process_object_detection(self, outputs, threshold: float = 0.5, target_sizes=None, top_k=None):
        """Per image `{"scores", "labels", "boxes"}` (xyxy pixels of `target_sizes[i]` (height, width), default the
        input's size) of the detections scoring above `threshold`."""
        results = []
        for i in range(len(outputs.boxes)):
            boxes, _ = _scale(outputs, i, target_sizes)
            keep = outputs.scores[i] > threshold
            results.append({"scores": outputs.scores[i][keep], "labels": outputs.labels[i][keep], "boxes": boxes[keep]})
        return results

    def post_process_instance_segmentation(
        self, outputs, threshold: float = 0.5, mask_threshold: float = 0.5, target_sizes=None, **kwargs
    ):
        """Mask R-CNN: per image a `segmentation` map (height, width) of segment ids (-1 where no instance) and
        `segments_info` (`id`, `label_id`, `score`), plus each instance's own binary `masks` (they may overlap; in
        the map a pixel goes to the highest-scoring instance) with its `scores`, `labels` and `boxes` (as
        `post_process_object_detection`'s: `draw_detections` takes the result). Masks are pasted into their boxes
        at the target size and thresholded at `mask_threshold` (mmdetection's mask_thr_binary 0.5). Other keyword
        arguments (the pipeline's `overlap_mask_area_threshold`) do not apply to Mask R-CNN."""
        if outputs.masks is None:
            raise ValueError("post_process_instance_segmentation needs Mask R-CNN's outputs (masks); got none")
        results = []
        for i in range(len(outputs.boxes)):
            boxes, (height, width) = _scale(outputs, i, target_sizes)
            keep = outputs.scores[i] > threshold
            scores, labels = outputs.scores[i][keep], outputs.labels[i][keep]
            masks = paste_masks_in_image(outputs.masks[i][keep], boxes[keep], (height, width))[:, 0] > mask_threshold
            segmentation = torch.full((height, width), -1, dtype=torch.long, device=masks.device)
            for k in scores.argsort().tolist():  # ascending: the highest score is painted last and wins
                segmentation[masks[k]] = k
            info = [{"id": k, "label_id": int(labels[k]), "score": float(scores[k])} for k in range(len(scores))]
            results.append(
                {
                    "segmentation": segmentation,
                    "segments_info": info,
                    "masks": masks,
                    "scores": scores,
                    "labels": labels,
                    "boxes": boxes[keep],
                }
            )
        return results

    @property
    def post_process_panoptic_segmentation(self):
        """Not for Mask R-CNN: absent (pipeline("image-segmentation") would prefer it to instance segmentation)."""
        raise AttributeError("Mask R-CNN gives instances, not a panoptic segmentation")

    @property
    def post_process_semantic_segmentation(self):
        raise AttributeError("Mask R-CNN gives instances, not a semantic segmentation")


__all__ = ["PvtDetectorImageProcessor"]
