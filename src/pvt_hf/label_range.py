"""Labels outside the dataset's class range (a wrong label set, a mislabelled sample) stop the run before any step
uses them, naming the label, the sample and the range: otherwise they fail far from their cause (mixing's one-hot,
a loss) or, worse, train silently on the wrong class."""


class LabelOutOfRangeError(ValueError):
    """A sample's class label outside 0 .. num_labels - 1."""


def check_label_range(example: dict, task: str, num_labels: int, sample: str) -> None:
    """Raise when the decoded `example`'s classification label or detection categories fall outside the range."""
    if task == "segmentation":  # label maps are checked against the head (ignore index, reduced labels)
        return
    labels = [example["label"]] if task == "classification" else example["objects"]["category"]
    outside = [label for label in labels if not 0 <= label < num_labels]
    if outside:
        raise LabelOutOfRangeError(
            f"sample {sample}: label {outside[0]} is outside the class range 0..{num_labels - 1} of the dataset's "
            f"{num_labels} classes. Check the dataset's labels and its class names (--label_names)."
        )
