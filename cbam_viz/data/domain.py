"""Whether a model set can know an image: models trained only on the generator's shapes (the demo set)
know nothing else. One rule and one wording for the app, the command line and exported figures."""
from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from .synth import CLASSES

OUT_OF_DOMAIN = ("These models know only the 12 generated shapes (the demo set was trained on generated images only): "
                 "unless this image comes from the project's generator, their answers and maps mean nothing, whether "
                 "or not they agree.")


def out_of_domain(class_names: Sequence[str], generated: bool) -> str | None:
    """:data:`OUT_OF_DOMAIN` when the set's classes are the generator's and the image is not known to be
    a generated one (``generated``); None otherwise."""
    return OUT_OF_DOMAIN if list(class_names) == list(CLASSES) and not generated else None


def written_by_samples(path: str | Path) -> bool:
    """Whether ``path`` is an image that ``python -m cbam_viz samples`` wrote: listed in the labels.csv beside it."""
    path = Path(path)
    try:
        with open(path.parent / "labels.csv", newline="") as f:
            return any(row.get("file") == path.name for row in csv.DictReader(f))
    except (OSError, csv.Error, UnicodeDecodeError):
        return False
