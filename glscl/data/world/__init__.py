"""The embedded procedural video world: short real mp4 clips of moving shapes, with captions.

Two kinds of world (``WorldConfig.kind``; ``world_config(kind)`` gives each one's shipped settings):

- ``scenes`` (the embedded default): a clip is 2-4 scene-cut segments, each with 1-2 moving objects
  of its own (no appearance repeated in a clip). Each caption describes part of the clip: one
  segment ("a small red circle moves left", kind ``single``; "... while ...", kind ``while``) or two
  consecutive segments in order ("<segment>, then <next segment>", kind ``then``). A training clip
  keeps every segment caption and some "then" captions; an evaluation clip keeps ``eval_captions``
  captions, each true of that clip alone within its split. ``world.json`` records each clip's
  ``segments`` (frame spans) and each caption's ``caption_frames`` and kind: what the global weights
  and the queries should find (``glscl.engine.mechanism``).
- ``objects``: one scene per clip, every caption about the whole clip; the order and twin probes.

In the objects world every clip shows shapes {circle, square, triangle} x colours {red, green, blue, yellow} x sizes
{small, large} on a black background. Caption kinds:

- ``single``: one object moves: "a small red circle moves left";
- ``while``: two objects move at the same time: "a large blue square moves up while a small red
  circle moves left" (the two parts in sorted order, so one scene has one caption);
- ``then``: one object moves for part of the clip and a second, still one appears or disappears
  strictly before or after that motion; the caption tells them in order: "a small red circle moves
  up, then a large blue square appears" (the square appears once the circle has stopped).

Distractors are extra still objects that no caption names, so every moving object is named.

Evaluation splits (``val`` and ``test``) hold two kinds of probe:

- time-reversed twins: a clip and its twin show the same frames in opposite order; their captions
  differ ("appears" <-> "disappears", every motion reversed). An order-blind model cannot tell them
  apart, so its twin accuracy (see ``twin_accuracy``) is 50 %;
- one-detail variants (hard negatives): a caption equal to another clip's caption but for one
  word (shape, colour, size, direction, or appears/disappears).

Captions of one evaluation split are unique: a draw whose caption is already in the split is drawn
again, so each test caption names exactly one video of its split. (A "single" caption can still
be partly true of a richer clip: "a red circle moves up" of "a red circle moves up, then ...".)
Training captions may repeat, as in real datasets.

The world is written in MSR-VTT's native layout, so the MSR-VTT adapter reads it unchanged:
``MSRVTT_data.json``, ``MSRVTT_train.9k.csv``, ``MSRVTT_val.csv``, ``MSRVTT_JSFUSION_test.csv``,
``videos/{video_id}.mp4``, plus ``world.json``: the config, every clip's objects, kind,
segments, captions (text, kind, caption_frames), twin and per-frame captions (what one frame shows,
for frame-level "CLIP pre-training"). Both json files
name the validation split ``validate``, as MSR-VTT does; in code it is ``val`` (``DISK_SPLITS``).
Frame t of a clip is second t of its video (``fps`` = 1 by default), so sampling at 1 fps sees
every frame.

Modules: ``specs`` (vocabulary, ``WorldConfig``, object/clip/video/caption specs, ``reverse_clip``,
``world_config``), ``placement`` (start positions), ``scenes`` (sampling the scenes world),
``render`` (pixels of a clip), ``generator`` (sampling the objects world, writing, reading),
``probes`` (the twin probe), ``annotation`` (caption frames and segments of a split's sampled frames).
"""
from __future__ import annotations

from glscl.data.world.generator import (
    IN_PROGRESS,
    frame_caption_samples,
    generate_world,
    load_world,
    sample_world,
    write_mp4,
)
from glscl.data.world.placement import objects_overlap
from glscl.data.world.probes import twin_accuracy, twin_indices
from glscl.data.world.render import render_clip
from glscl.data.world.specs import (
    COLOURS,
    KINDS,
    WORLD_KINDS,
    ClipSpec,
    ObjectSpec,
    World,
    WorldCaption,
    WorldConfig,
    WorldVideo,
    reverse_clip,
    world_config,
)

__all__ = [
    "COLOURS",
    "KINDS",
    "WORLD_KINDS",
    "IN_PROGRESS",
    "ClipSpec",
    "ObjectSpec",
    "World",
    "WorldCaption",
    "WorldConfig",
    "WorldVideo",
    "frame_caption_samples",
    "generate_world",
    "load_world",
    "objects_overlap",
    "render_clip",
    "reverse_clip",
    "sample_world",
    "twin_accuracy",
    "twin_indices",
    "world_config",
    "write_mp4",
]
