"""Labels outside the dataset's class range (a wrong label set, a mislabelled sample) stop the run before any step
uses them, naming the label, the sample and the range: otherwise they fail far from their cause (mixing's one-hot,
a loss) or, worse, train silently on the wrong class."""

import numpy as np


class LabelOutOfRangeError(ValueError):
    """A sample's class label outside the dataset's class range."""


def check_label_range(example: dict, task: str, num_labels: int, sample: str, ignore_index: int | None = None) -> None:
    """Raise when the decoded `example`'s labels fall outside the range of the dataset's `num_labels` classes:
    classification labels and detection categories 0 .. num_labels - 1; segmentation label maps in ADE20K's
    convention, 0 ("other") and 1 .. num_labels (what `do_reduce_labels` maps to 0 .. num_labels - 1, or keeps with
    "other" as class 0), plus `ignore_index`, the value the loss ignores. The whole map is checked (its max),
    not the crop a step sees, so a bad map stops the run whatever its augmentation."""
    if task == "segmentation":
        labels = np.asarray(example["annotation"])
        # a max first (one pass, ~µs): the sort of np.unique (~2 ms for an ADE20K map) only for the values above range
        above = labels[labels > num_labels] if labels.size and labels.max() > num_labels else labels[:0]
        outside = [int(value) for value in np.unique(above) if value != ignore_index]
        ignored = f", {ignore_index} ignored" if ignore_index is not None else ""
        valid = f'0..{num_labels} of the label maps (0 = "other", 1..{num_labels} the dataset\'s classes{ignored})'
    else:
        labels = [example["label"]] if task == "classification" else example["objects"]["category"]
        outside = [label for label in labels if not 0 <= label < num_labels]
        valid = f"0..{num_labels - 1} of the dataset's {num_labels} classes"
    if outside:
        raise LabelOutOfRangeError(
            f"sample {sample}: label {outside[0]} is outside the class range {valid}. Check the dataset's labels and "
            "its class names (--label_names)."
        )
