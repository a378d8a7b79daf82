"""Data: the embedded world, video decoding, dataset adapters, datasets and the feature cache."""
from __future__ import annotations

import dataclasses

from glscl.data.splits import SPLITS, RetrievalSplit


def _unreadable(split: RetrievalSplit, progress: bool = False) -> dict[int, str]:
    """Index -> reason for every video of ``split`` that cannot be opened or whose first frame does not decode."""
    from glscl.data.video import VideoError, probe_video
    from glscl.progress import progress_bar

    bad: dict[int, str] = {}
    for i, path in enumerate(progress_bar(split.video_paths, desc=f"checking {split.name} videos", enabled=progress)):
        try:
            probe_video(path)
        except VideoError as e:
            bad[i] = str(e)
    return bad


def require_readable_videos(split: RetrievalSplit, progress: bool = False) -> None:
    """A cheap probe (open each video, decode its first frame); raises ``VideoError`` naming the first bad file."""
    from glscl.data.video import VideoError

    bad = _unreadable(split, progress)
    if bad:
        first = bad[min(bad)]
        more = f" (and {len(bad) - 1} more unreadable videos)" if len(bad) > 1 else ""
        raise VideoError(f"{split.name} split: {first}{more}; set data.skip_bad=true to skip such videos")


def drop_unreadable_videos(split: RetrievalSplit, progress: bool = False) -> RetrievalSplit:
    """Try to decode one frame of every video; drop the unreadable ones (and their captions), recording why."""
    bad = _unreadable(split, progress)
    if not bad:
        return split
    keep = [i for i in range(split.num_videos) if i not in bad]
    new_index = {old: new for new, old in enumerate(keep)}
    captions = [(c, new_index[v]) for c, v in zip(split.captions, split.caption_video) if v in new_index]
    skipped = tuple((str(split.video_paths[i]), f"video {split.video_ids[i]}", reason) for i, reason in bad.items())
    return dataclasses.replace(split, video_ids=tuple(split.video_ids[i] for i in keep),
                               video_paths=tuple(split.video_paths[i] for i in keep),
                               captions=tuple(c for c, _ in captions), caption_video=tuple(v for _, v in captions),
                               skipped=split.skipped + skipped)


def _val_size(cfg, name: str, announce: bool) -> int:
    """``data.val_size``, cut to 10 % of the training videos it is carved from (at least 1); a note says so."""
    from glscl.config import ConfigError
    from glscl.data.adapters import CARVE_POOLS

    if name not in CARVE_POOLS:
        return cfg.val_size
    pool = CARVE_POOLS[name](cfg.root)
    if pool is None:  # the dataset ships its validation split
        return cfg.val_size
    file, ids = pool
    if len(ids) < 2:
        raise ConfigError(f"data.val_size: {file} lists {len(ids)} training video(s); at least 2 are needed to carve a validation split")
    size = min(cfg.val_size, max(1, len(ids) // 10))
    if size < cfg.val_size and announce:
        print(f"note: data.val_size = {cfg.val_size} is more than 10 % of the {len(ids)} training videos in {file}; "
              f"carving {size} for validation")
    return size


def load_split(cfg, split: str) -> RetrievalSplit:
    """The ``split`` ('train', 'val', 'test') of the dataset a ``DataConfig`` names.

    The embedded world is written in MSR-VTT's layout and read by the MSR-VTT adapter. With
    ``cfg.skip_bad``, bad annotation rows and unreadable videos are skipped and recorded in
    ``split.skipped`` (and counted in the run's summary); otherwise the first one stops the run
    with a one-line error naming the file. A validation split carved from the training list
    (MSR-VTT without MSRVTT_val.csv, ActivityNet) takes ``min(data.val_size, 10 % of the training
    videos)`` videos, at least 1; a note is printed when that is fewer than ``data.val_size``.
    """
    result = annotated_split(cfg, split)
    return drop_unreadable_videos(result) if cfg.skip_bad else result


def annotated_split(cfg, split: str, skip_bad: bool | None = None, announce: bool = True) -> RetrievalSplit:
    """``split`` as the annotation files give it, no video opened. ``skip_bad`` (default ``cfg.skip_bad``):
    record bad annotation rows in ``split.skipped`` instead of stopping at the first."""
    from glscl.data.adapters import load_dataset

    name = "msrvtt" if cfg.dataset == "world" else cfg.dataset
    skip = cfg.skip_bad if skip_bad is None else skip_bad
    kwargs = {"video_dir": cfg.video_dir, "video_ext": cfg.video_ext, "skip_bad": skip}
    if name in ("msrvtt", "activitynet") and split != "test":
        kwargs["val_size"] = _val_size(cfg, name, announce=announce and split == "val")
    result = load_dataset(name, cfg.root, split, **kwargs)
    return dataclasses.replace(result, dataset=cfg.dataset) if cfg.dataset == "world" else result


def split_overlaps(splits: dict[str, RetrievalSplit]) -> list[str]:
    """One line per pair of splits that share a video id (train/val, train/test, val/test), naming the files."""
    names = [s for s in SPLITS if s in splits]
    lines = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = sorted(set(splits[a].video_ids) & set(splits[b].video_ids))
            if shared:
                files = " and ".join(dict.fromkeys(f for s in (a, b) for f in splits[s].source)) or "the annotation files"
                shown = ", ".join(repr(v) for v in shared[:3]) + (", ..." if len(shared) > 3 else "")
                lines.append(f"the {a} and {b} splits share {len(shared)} video(s) ({shown}): {files}; "
                             "a video may belong to one split only")
    return lines


def refuse_overlap(splits: dict[str, RetrievalSplit]) -> None:
    """Refuse splits that share a video id, naming the files (the first overlap of ``split_overlaps``)."""
    from glscl.data.adapters import DatasetError

    overlaps = split_overlaps(splits)
    if overlaps:
        raise DatasetError(overlaps[0])


def load_splits(cfg, names: tuple[str, ...] = SPLITS) -> dict[str, RetrievalSplit]:
    """The splits ``names`` of the dataset a ``DataConfig`` names, refused if they share a video."""
    splits = {s: load_split(cfg, s) for s in names}
    refuse_overlap(splits)
    return splits
