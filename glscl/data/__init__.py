"""Data: the embedded world, video decoding, dataset adapters, datasets and the feature cache."""
from __future__ import annotations

import dataclasses

from glscl.data.splits import RetrievalSplit


def drop_unreadable_videos(split: RetrievalSplit, progress: bool = False) -> RetrievalSplit:
    """Try to decode one frame of every video; drop the unreadable ones (and their captions), recording why."""
    from tqdm.auto import tqdm

    from glscl.data.video import VideoError, load_clip

    bad: dict[int, str] = {}
    for i, path in enumerate(tqdm(split.video_paths, desc=f"checking {split.name} videos", disable=not progress)):
        try:
            load_clip(path, 1)
        except VideoError as e:
            bad[i] = str(e)
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


def load_split(cfg, split: str) -> RetrievalSplit:
    """The ``split`` ('train', 'val', 'test') of the dataset a ``DataConfig`` names.

    The embedded world is written in MSR-VTT's layout and read by the MSR-VTT adapter. With
    ``cfg.skip_bad``, bad annotation rows and unreadable videos are skipped and recorded in
    ``split.skipped`` (and counted in the run's summary); otherwise the first one stops the run
    with a one-line error naming the file.
    """
    from glscl.data.adapters import load_dataset

    name = "msrvtt" if cfg.dataset == "world" else cfg.dataset
    kwargs = {"video_dir": cfg.video_dir, "skip_bad": cfg.skip_bad}
    if name in ("msrvtt", "activitynet"):
        kwargs["val_size"] = cfg.val_size
    result = load_dataset(name, cfg.root, split, **kwargs)
    if cfg.skip_bad:
        result = drop_unreadable_videos(result)
    return dataclasses.replace(result, dataset=cfg.dataset) if cfg.dataset == "world" else result
