"""What every dataset source answers, whatever its layout (`folders`, `builders`): its split names (with the usual
aliases), a canonical dataset per split and, where the source reports it, the split's size."""

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}

SPLIT_ALIASES = {"train": ("training",), "validation": ("val", "valid"), "test": ("testing",)}

SPLIT_NAMES = {name for split, aliases in SPLIT_ALIASES.items() for name in (split, *aliases)}


class Source:
    """A dataset source: its split names, and for each split a canonical dataset and, where reported, a size."""

    name: str
    splits: list[str]
    hub_id: str | None = None
    bbox_format: str | None = None
    id2label: dict[int, str] | None = None

    def split(self, requested: str | None, defaults, role: str) -> str:
        candidates = (requested, *SPLIT_ALIASES.get(requested, ())) if requested else defaults
        for name in candidates:
            if name in self.splits:
                return name
        raise FileNotFoundError(
            f"no {role} split {requested or ''} in {self.name} (tried {list(candidates)}; it has "
            f"{self.splits}): pass --{role}_split"
        )

    def same_data(self, first: str, second: str) -> bool:
        return False
