"""What the tutorials share: the embedded world, its tiny CLIP, the demo's config, clips through the backbone.

    tut = tutorial.setup("data/world-objects", quick=False, run_dir="runs/demo-objects/glscl", world="objects")
    images, frame_mask, frames = tut.encode_clips(["video12", "video13"])
    text = tut.encode_captions(["a small red circle moves left"])

``setup`` reuses what is on disk and never overwrites it: a world (``world.json``) and its tiny CLIP
checkpoint are made only when missing (``glscl.engine.embedded.prepare_embedded``), and the config is the
demo's (``demo_config``), so the tutorials read the feature cache ``glscl demo`` built. ``quick`` is the
embedded world's quick (``glscl.engine.embedded``: the small world, a short pre-training, the short schedule). With a trained
GLSCL run in ``run_dir`` its config, backbone and head are loaded (``glscl.engine.loading.load_run``).

``train_variants`` trains a few runs of one config that differ in some fields (each from the feature
cache; a finished run is read back, not trained again) and returns their records.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from glscl.config import RunConfig, build_config
from glscl.data.video import ClipTransform, load_clip
from glscl.data.world import World, load_world
from glscl.engine.embedded import CLIP_NAME
from glscl.lab.ui import viz
from glscl.model.backbone import Backbone, TextFeatures

__all__ = ["Tutorial", "setup", "train_variants", "claim", "exercise", "say", "CLIP_NAME"]


@dataclass
class Tutorial:
    """The world, the tiny CLIP checkpoint, a run config, its frozen backbone (eval mode), and a trained
    GLSCL head when one was loaded (``head`` None otherwise; ``run_dir`` is where it came from)."""

    root: Path
    world: World
    clip: Path
    config: RunConfig
    backbone: Backbone
    head: torch.nn.Module | None = None
    run_dir: Path | None = None

    @property
    def trained(self) -> bool:
        return self.head is not None

    def transform(self) -> ClipTransform:
        return ClipTransform.for_backbone(self.backbone)

    @torch.no_grad()
    def encode_clips(self, video_ids: Sequence[str], num_frames: int | None = None,
                     valid: Sequence[int | None] | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decode videos as training does and encode their frames with the backbone.

        Returns (images B x T x H x W x 3 uint8 for display, frame_mask B x T, frame features x_f
        B x T x d with padded frames 0). ``valid[b]``: keep only that many real frames of video b
        (the rest zeroed and masked, as ``load_clip`` does for a shorter video); None keeps all.
        """
        t = num_frames or self.config.model.num_frames
        clips = [load_clip(self.world.video_path(v), t, self.config.data.sample_fps) for v in video_ids]
        images = torch.stack([f for f, _ in clips])
        mask = torch.stack([m for _, m in clips])
        for b, n in enumerate(valid or []):
            if n is not None:
                n = min(int(n), int(mask[b].sum()))
                mask[b, n:] = False
                images[b, n:] = 0
        tf = self.transform()
        pixels = torch.stack([tf(images[b], mask[b]) for b in range(len(clips))])
        self.backbone.eval()
        return images, mask, self.backbone.encode_frames(pixels) * mask[..., None]

    @torch.no_grad()
    def encode_captions(self, captions: Sequence[str]) -> tuple[TextFeatures, list[list[str]]]:
        """Backbone text features of ``captions`` and the word piece at every real token (for plots)."""
        ids = self.backbone.tokenizer(list(captions))
        self.backbone.eval()
        return self.backbone.encode_text(ids), [viz.token_labels(self.backbone.tokenizer, ids[b]) for b in range(len(captions))]


def _clip_for(root: Path, clip, quick: bool, world: str) -> Path:
    """The tiny CLIP checkpoint to use: ``clip`` if given, else the world folder's (made if missing)."""
    from glscl.engine.embedded import prepare_embedded, pretrain_tiny_clip

    if clip is not None:
        return viz.repo_path(clip)
    if (root / "world.json").is_file():   # never regenerate a world whose settings differ from quick/full
        path = root / CLIP_NAME
        return path if path.is_file() else Path(pretrain_tiny_clip(root, quick, progress=False))
    return Path(prepare_embedded(root, quick, progress=False, world=world))


def setup(root: str | Path = "data/world", clip: str | Path | None = None, quick: bool = False,
          run_dir: str | Path | None = None, out: str | Path = "runs", cache: str | Path | None = None,
          head_kind: str | None = "glscl", world: str = "scenes") -> Tutorial:
    """The ``world`` (scenes or objects) at ``root`` (relative paths: from the repository root), its tiny
    CLIP and the demo's config.

    run_dir: a trained run to load (used only if its ``checkpoints/best`` exists, and only if it is a
    ``head_kind`` head when that is given); its config then replaces the demo's. out, cache: the
    config's ``out_dir`` and ``data.cache_dir`` (default: ``<root>/cache``, the demo's cache).
    """
    from glscl.engine.embedded import demo_config
    from glscl.engine.loading import load_run
    from glscl.engine.run import load_backbone

    root = viz.repo_path(root)
    run_dir = viz.repo_path(run_dir)
    if run_dir is not None and (run_dir / "checkpoints" / "best" / "config.yaml").is_file():
        loaded = load_run(run_dir)
        if head_kind is None or (loaded.config.model.head == head_kind and loaded.config.model.interaction == "both"):
            cfg = loaded.config
            root = Path(cfg.data.root)
            return Tutorial(root, load_world(root), Path(cfg.model.pretrained), cfg, loaded.backbone.eval(),
                            loaded.head.eval(), run_dir)
    clip = _clip_for(root, clip, quick, world)
    cache = viz.repo_path(cache) if cache is not None else root / "cache"
    cfg = demo_config(str(root), str(clip), str(viz.repo_path(out)), str(cache), quick, world)
    backbone, _ = load_backbone(cfg, {})
    return Tutorial(root, load_world(root), clip, cfg, backbone.eval())


def train_variants(base: RunConfig, variants: Mapping[str, Mapping], *, progress: bool = False) -> dict[str, dict]:
    """Train ``base`` once per variant (name -> config overrides; the name becomes the run's name) and
    return {name: metrics record}. A finished run of the same config is not trained again: ``run``
    resumes from its last checkpoint and only evaluates it."""
    from glscl.engine.run import run

    return {name: run(build_config(base, {"name": name, **overrides}), progress=progress)
            for name, overrides in variants.items()}


def claim(holds, text: str) -> None:
    """A sentence of the tutorial's story, checked: shown (with a tick) when ``holds`` is true; otherwise an
    AssertionError that quotes it, so a notebook run in the tests fails when its story stops being true."""
    if not bool(holds):
        raise AssertionError(f"the tutorial's text no longer holds: {text}")
    say(f"&#10004; {text}")


def exercise(prediction, answer, explanation: str) -> bool | None:
    """An exercise's answer, measured by the notebook: shows the student's ``prediction`` (None: not made
    yet) next to the measured ``answer`` and the ``explanation``; returns whether they match (None when
    no prediction was made). The explanation is the notebook's claim about the answer: check it with
    ``claim`` on quantities the notebook measured, so the answer key cannot go stale."""
    matched = None if prediction is None else prediction == answer
    verdict = {None: "no prediction yet: set `prediction` and run again", True: "your prediction holds",
               False: f"your prediction was {prediction!r}"}[matched]
    say(f"**Answer: {answer!r}** ({verdict}). {explanation}")
    return matched


def say(text: str) -> None:
    """Display a sentence computed by the notebook (Markdown)."""
    from IPython.display import Markdown, display

    display(Markdown(text))


def signed(x: float, digits: int = 4) -> str:
    """A signed difference, fixed-point unless it is too small to show there (then in scientific notation)."""
    return f"{x:+.{digits}f}" if abs(x) >= 0.5 * 10 ** -digits or x == 0 else f"{x:+.1e}"
