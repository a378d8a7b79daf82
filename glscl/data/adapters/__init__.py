"""Dataset adapters: the five text-video benchmarks, read from their native files.

Each ``load_<dataset>(root, split, ...)`` (one module per dataset; what they share is in
``common``) reads the annotation files exactly as the dataset ships them and returns a
:class:`RetrievalSplit` for ``split`` in ``SPLITS`` ("train", "val", "test"):

==============  ==========================================  =======================================
dataset         files under ``root``                        captions
==============  ==========================================  =======================================
msrvtt          MSRVTT_data.json, MSRVTT_train.9k.csv,       train/val: every caption of a video;
                MSRVTT_JSFUSION_test.csv (1k-A test),        test: one caption per video (1k-A)
                optional MSRVTT_val.csv
msvd            {train,val,test}_list.txt, raw-captions.pkl  every caption of a video (multi-caption)
didemo          {train,val,test}_data.json                   one paragraph per video
lsmdc           LSMDC16_annos_{training,val}.csv,            one caption per clip
                LSMDC16_challenge_1000_publictect.csv
activitynet     train.json, val_1.json                       one paragraph per video
==============  ==========================================  =======================================

Validation splits. MSVD, DiDeMo and LSMDC ship one. MSR-VTT uses ``MSRVTT_val.csv`` when present
and otherwise carves ``val_size`` videos out of the 9k training list; ActivityNet has no labelled
test set, so its test split is ``val_1.json`` (the standard paragraph-retrieval protocol) and its
validation split is carved out of ``train.json``. Carving is deterministic (a seeded hash of each
video id), the carved videos leave the training split, and a validation split that shares a video
with the test split is refused: model selection never looks at the test set.

Bad input. A missing annotation file, a file-level problem (invalid JSON, missing CSV column,
a pickle that is not a plain dict) always raises :class:`DatasetError`. A bad item (missing key,
empty caption, text that is not UTF-8, a video id the caption file does not know) raises
``DatasetError`` too, with one line naming the file, the row and the field; with
``skip_bad=True`` the item is skipped instead and recorded in ``RetrievalSplit.skipped`` as
``(file, row, reason)``. Nothing is dropped silently. Video files are not opened here (the decoder
reports missing ones); ``check_videos=True`` also treats a missing video file as a bad item.

Only the rows a split uses are validated: loading "train" does not fail on a bad test caption.
Caption whitespace is normalised (runs of spaces and newlines become one space).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from glscl.data.adapters import activitynet, msrvtt
from glscl.data.adapters.activitynet import load_activitynet
from glscl.data.adapters.common import DatasetError
from glscl.data.adapters.didemo import load_didemo
from glscl.data.adapters.lsmdc import load_lsmdc, lsmdc_movie
from glscl.data.adapters.msrvtt import load_msrvtt
from glscl.data.adapters.msvd import load_msvd
from glscl.data.splits import RetrievalSplit

__all__ = [
    "ADAPTERS",
    "CARVE_POOLS",
    "DatasetError",
    "UNKNOWN_CAPTIONS",
    "load_activitynet",
    "load_dataset",
    "load_didemo",
    "load_lsmdc",
    "load_msrvtt",
    "load_msvd",
    "lsmdc_movie",
]

ADAPTERS: dict[str, Callable[..., RetrievalSplit]] = {
    "msrvtt": load_msrvtt,
    "msvd": load_msvd,
    "didemo": load_didemo,
    "lsmdc": load_lsmdc,
    "activitynet": load_activitynet,
}


# datasets whose validation split is carved from the training list: root -> (file, video ids) or None
CARVE_POOLS: dict[str, Callable[[str | Path], tuple[Path, list[str]] | None]] = {
    "msrvtt": msrvtt.carve_pool,
    "activitynet": activitynet.carve_pool,
}


def load_dataset(name: str, root: str | Path, split: str, **kwargs: Any) -> RetrievalSplit:
    """Load ``split`` of the dataset called ``name`` (e.g. "msrvtt", "MSR-VTT") from ``root``."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in ADAPTERS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(ADAPTERS))}")
    return ADAPTERS[key](root, split, **kwargs)


# datasets with a registry of their videos beside the captions: root -> (file, row, reason) of captions
# for videos the registry does not list (see ``glscl.data.check``)
UNKNOWN_CAPTIONS: dict[str, Callable[[str | Path], list[tuple[str, str, str]]]] = {
    "msrvtt": msrvtt.unknown_caption_ids,
}

