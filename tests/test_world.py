"""The procedural world: determinism, the files it writes, what the videos show, the probes."""
from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from glscl.data.video import load_clip
from glscl.data.world import (
    COLOURS,
    IN_PROGRESS,
    KINDS,
    ClipSpec,
    ObjectSpec,
    WorldConfig,
    frame_caption_samples,
    generate_world,
    load_world,
    objects_overlap,
    render_clip,
    reverse_clip,
    sample_world,
    twin_accuracy,
    twin_indices,
    world_config,
)

TINY = WorldConfig(n_train=4, n_val=2, n_test=6, detail_share=0.3, twin_share=0.5, distractors=1, seed=3)
OPPOSITE = {"appears": "disappears", "disappears": "appears", "left": "right", "right": "left", "up": "down",
            "down": "up"}


def twin_caption(caption: str) -> str:
    """What the time-reversed clip's caption must be: every motion and event reversed, "then" clauses swapped."""
    clauses = [" ".join(OPPOSITE.get(w, w) for w in clause.split()) for clause in caption.split(", then ")]
    return ", then ".join(reversed(clauses))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return load_world(generate_world(tmp_path_factory.mktemp("world"), TINY, progress=False))


def decoded(world, video_id: str) -> np.ndarray:
    frames, mask = load_clip(world.video_path(video_id), world.config.frames)
    assert mask.all()
    return frames.numpy()


@pytest.mark.parametrize("field, value", [
    ("n_train", 0), ("n_test", 0), ("frames", 1), ("size", 40), ("size", 16), ("fps", 0), ("max_objects", 3),
    ("distractors", 3), ("twin_share", 1.5), ("detail_share", 0.8), ("seed", -1), ("frames", 100), ("n_test", 2.0),
])
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"WorldConfig.{field}"):
        WorldConfig(**{field: value})


def test_single_object_worlds_are_limited_by_distinct_captions():
    with pytest.raises(ValueError, match="WorldConfig.n_test"):
        WorldConfig(max_objects=1, n_val=10, n_test=97)
    videos = sample_world(WorldConfig(max_objects=1, n_train=5, n_val=10, n_test=96))
    assert {v.clip.kind for v in videos} == {"single"}


def test_same_seed_gives_the_same_world(world, tmp_path):
    again = load_world(generate_world(tmp_path / "again", TINY, progress=False))
    assert [v.caption for v in again.videos] == [v.caption for v in world.videos]
    assert (tmp_path / "again" / "MSRVTT_data.json").read_text() == (world.root / "MSRVTT_data.json").read_text()
    for video in world.videos:
        np.testing.assert_array_equal(decoded(again, video.video_id), decoded(world, video.video_id))


def test_another_seed_gives_another_world():
    first, second = sample_world(TINY), sample_world(replace(TINY, seed=TINY.seed + 1))
    assert [v.caption for v in first] != [v.caption for v in second]
    assert not np.array_equal(render_clip(first[0].clip, TINY), render_clip(second[0].clip, TINY))


def test_generation_is_idempotent_and_restarts_after_a_kill(world, tmp_path):
    meta = world.root / "world.json"
    stamp = meta.stat().st_mtime_ns
    generate_world(world.root, TINY, progress=False)
    assert meta.stat().st_mtime_ns == stamp

    root = tmp_path / "killed"
    shutil.copytree(world.root, root)
    (root / "world.json").unlink()  # a run killed before its last step leaves no world.json
    (root / IN_PROGRESS).touch()
    (root / "videos" / "video0.mp4").write_bytes(b"half written")
    generate_world(root, TINY, progress=False)
    assert load_world(root).videos == world.videos
    assert not (root / IN_PROGRESS).exists()
    load_clip(root / "videos" / "video0.mp4", TINY.frames)


def test_refuses_to_write_into_a_folder_that_is_not_a_world(tmp_path):
    (tmp_path / "MSRVTT_data.json").write_text("{}")
    with pytest.raises(FileExistsError, match="refusing"):
        generate_world(tmp_path, TINY, progress=False)


def test_msrvtt_layout(world):
    by_split = {split: [v for v in world.videos if v.split == split] for split in ("train", "val", "test")}
    assert [len(by_split[s]) for s in ("train", "val", "test")] == [TINY.n_train, TINY.n_val, TINY.n_test]
    data = json.loads((world.root / "MSRVTT_data.json").read_text())
    on_disk = {"train": "train", "val": "validate", "test": "test"}  # MSR-VTT's own split names
    assert {v["video_id"]: v["split"] for v in data["videos"]} == {v.video_id: on_disk[v.split] for v in world.videos}
    assert [(s["video_id"], s["caption"]) for s in data["sentences"]] == [(v.video_id, v.caption) for v in world.videos]
    with open(world.root / "MSRVTT_train.9k.csv") as f:
        assert [row["video_id"] for row in csv.DictReader(f)] == [v.video_id for v in by_split["train"]]
    with open(world.root / "MSRVTT_val.csv") as f:
        assert [row["video_id"] for row in csv.DictReader(f)] == [v.video_id for v in by_split["val"]]
    with open(world.root / "MSRVTT_JSFUSION_test.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["key", "vid_key", "video_id", "sentence"]
    assert [(r["video_id"], r["sentence"]) for r in rows] == [(v.video_id, v.caption) for v in by_split["test"]]
    assert all(world.video_path(v.video_id).is_file() for v in world.videos)
    assert world.config == TINY


def test_decoded_frames_show_what_was_drawn(world):
    """Mean pixel error is small and every object's colour blob sits where its spec says."""
    for video in world.videos:
        drawn, seen = render_clip(video.clip, TINY), decoded(world, video.video_id)
        assert np.abs(drawn.astype(int) - seen.astype(int)).mean() < 3.0
        for obj in video.clip.objects:
            others = [o for o in video.clip.objects if o is not obj]
            if any(o.colour == obj.colour or objects_overlap(obj, o, TINY.size) for o in others):
                continue
            for t in range(obj.visible_from, obj.visible_to):
                distance = np.linalg.norm(seen[t].astype(float) - COLOURS[obj.colour], axis=-1)
                rows, cols = np.nonzero(distance < 60)
                assert abs(cols.mean() - obj.centre(t)[0]) <= 1.5 and abs(rows.mean() - obj.centre(t)[1]) <= 1.5


def test_render_of_a_hand_made_clip():
    circle = ObjectSpec("circle", "red", "large", "right", x=20, y=30, speed=4, visible_from=0, visible_to=8, moves_to=3)
    square = ObjectSpec("square", "blue", "small", None, x=50, y=10, speed=0, visible_from=3, visible_to=8)
    clip = ClipSpec("then", (circle, square))
    frames = render_clip(clip, WorldConfig())
    assert frames.shape == (8, 64, 64, 3) and frames.dtype == np.uint8
    for t in range(8):  # moves in frames 0..2, then stands still
        rows, cols = np.nonzero((frames[t] == COLOURS["red"]).all(-1))
        assert (cols.mean(), rows.mean()) == (20 + 4 * min(t, 2), 30)
    assert not (frames[:3] == COLOURS["blue"]).all(-1).any() and (frames[3:] == COLOURS["blue"]).all(-1).any()
    assert clip.caption == "a large red circle moves right, then a small blue square appears"
    assert clip.frame_caption(2) == "a large red circle"
    assert clip.frame_caption(3) == "a large red circle and a small blue square"
    twin = reverse_clip(clip, 8)
    assert twin.caption == "a small blue square disappears, then a large red circle moves left"
    np.testing.assert_array_equal(render_clip(twin, WorldConfig()), frames[::-1])


def test_while_captions_name_their_two_parts_in_one_order():
    cfg = WorldConfig()
    a = ObjectSpec("circle", "red", "small", "up", 20, 40, cfg.speed, 0, 8)
    b = ObjectSpec("square", "blue", "large", "left", 50, 20, cfg.speed, 0, 8)
    assert ClipSpec("while", (a, b)).caption == ClipSpec("while", (b, a)).caption \
        == "a large blue square moves left while a small red circle moves up"


def test_twins_are_the_same_frames_reversed_with_opposite_captions(world):
    assert len(world.twin_pairs) == 2  # round(0.5 * 6 / 2) test pairs + round(0.5 * 2 / 2) = 0 validation pairs
    by_id = {v.video_id: v for v in world.videos}
    for original, twin in world.twin_pairs:
        a, b = by_id[original], by_id[twin]
        assert a.twin_of == twin and b.twin_of == original and a.split == b.split
        np.testing.assert_array_equal(render_clip(b.clip, TINY), render_clip(a.clip, TINY)[::-1])
        assert np.abs(decoded(world, twin).astype(int) - decoded(world, original)[::-1].astype(int)).mean() < 3.0
        assert b.caption == twin_caption(a.caption)


def test_evaluation_captions_are_unique_with_twins_and_one_detail_variants():
    videos = sample_world(WorldConfig())
    for split in ("val", "test"):
        captions = [v.caption for v in videos if v.split == split]
        assert len(set(captions)) == len(captions)
    test = {v.video_id: v for v in videos if v.split == "test"}
    assert sum(v.twin_of is not None for v in test.values()) == 250  # 2 * round(0.25 * 1000 / 2)
    variants = [v for v in test.values() if v.detail_of is not None]
    assert len(variants) == 300  # round(0.3 * 1000)
    for v in variants:
        mine, base = Counter(v.caption.split()), Counter(test[v.detail_of].caption.split())
        assert sum((mine - base).values()) == 1 and sum((base - mine).values()) == 1


def test_frame_caption_samples(world):
    samples = frame_caption_samples(world.root)
    train = [v for v in world.videos if v.split == "train"]
    assert len(samples) == len(train) * TINY.frames
    video_id, t, caption = samples[TINY.frames + 2]
    assert (video_id, t) == (train[1].video_id, 2) and caption == train[1].clip.frame_caption(2)
    assert len(frame_caption_samples(world.root, splits=("train", "val", "test"))) == 12 * TINY.frames
    assert len(frame_caption_samples(world.root, splits=("val",))) == TINY.n_val * TINY.frames
    for bad in (("train", "validate"), "train"):
        with pytest.raises(ValueError, match="frame_caption_samples: splits must be"):
            frame_caption_samples(world.root, splits=bad)


def test_world_json_names_the_validation_split_as_msrvtt_does(world, tmp_path):
    stored = json.loads((world.root / "world.json").read_text())
    assert sorted({v["split"] for v in stored["videos"]}) == ["test", "train", "validate"]
    assert {v.split for v in world.videos} == {"train", "val", "test"}
    stored["videos"][0]["split"] = "dev"
    (tmp_path / "world.json").write_text(json.dumps(stored))
    with pytest.raises(ValueError, match=r"world\.json: video video0: split 'dev'"):
        load_world(tmp_path)


def test_twin_accuracy_by_hand():
    sim = np.array([
        [0.9, 0.1, 0.5],  # caption of video 0, twin 1: 0.9 > 0.1 -> 1
        [0.8, 0.8, 0.0],  # caption of video 1, twin 0: tie -> 1/2
        [0.3, 0.7, 0.1],  # caption of video 2: no twin, not counted
        [0.2, 0.6, 0.0],  # caption of video 0, twin 1: 0.2 < 0.6 -> 0
    ])
    assert twin_accuracy(sim, [0, 1, 2, 0], {0: 1, 1: 0}) == pytest.approx((1 + 0.5 + 0) / 3)
    assert np.isnan(twin_accuracy(sim, [0, 1, 2, 0], {}))


def test_twin_indices_follow_the_given_video_order(world):
    original, twin = world.twin_pairs[0]
    order = [twin, "video0", original]
    assert twin_indices(world, order) == {0: 2, 2: 0}


# -- the scenes world ------------------------------------------------------------------------------

SCENES_TINY = world_config("scenes", n_train=6, n_val=3, n_test=8, seed=5)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return load_world(generate_world(tmp_path_factory.mktemp("scenes"), SCENES_TINY, progress=False))


def _motion_frames(obj) -> list[int]:
    """Frames t at which the object stands somewhere else than at t - 1."""
    return [t for t in range(1, 64) if obj.centre(t) != obj.centre(t - 1) and obj.visible_from <= t - 1 and t < obj.visible_to]


def _clause_frames(clip, clause: str) -> list[int]:
    """The frames in which what a clause says happens, read off the clip's objects (motion or event)."""
    frames = []
    for obj in clip.objects:
        if f"{obj.noun} moves {obj.motion}" in clause:
            frames += _motion_frames(obj)
        if f"{obj.noun} appears" in clause:
            frames.append(obj.visible_from)
        if f"{obj.noun} disappears" in clause:
            frames.append(obj.visible_to)
    assert frames, f"nothing in the clip does {clause!r}"
    return frames


def test_then_means_after_in_both_worlds_and_in_twins(scenes):
    objects = sample_world(WorldConfig(n_train=200, n_val=20, n_test=60, twin_share=0.5))
    clips = [v.clip for v in objects] + [reverse_clip(v.clip, 8) for v in objects]
    checked = 0
    for clip in clips:
        if clip.kind == "then":
            first, second = clip.caption.split(", then ")
            assert max(_clause_frames(clip, first)) <= min(_clause_frames(clip, second)), clip.caption
            checked += 1
    for video in scenes.videos:
        for caption in video.captions:
            if caption.kind == "then":
                first, second = caption.text.split(", then ")
                assert max(_clause_frames(video.clip, first)) < min(_clause_frames(video.clip, second)), caption.text
                checked += 1
    assert checked > 100


def test_scenes_clips_are_scene_cut_segments_with_objects_of_their_own(scenes):
    cfg = SCENES_TINY
    for video in scenes.videos:
        segments = video.clip.segments
        assert cfg.min_segments <= len(segments) <= cfg.max_segments
        assert segments[0][0] == 0 and segments[-1][1] == cfg.frames
        assert all(b - a >= cfg.min_segment_frames for a, b in segments)
        assert all(segments[i][1] == segments[i + 1][0] for i in range(len(segments) - 1))
        assert len({o.appearance for o in video.clip.objects}) == len(video.clip.objects)
        for obj in video.clip.objects:
            assert (obj.visible_from, obj.visible_to) in segments and obj.motion is not None
        for i in range(len(segments)):
            assert 1 <= len(video.clip.segment_objects(i)) <= cfg.max_objects
        drawn = render_clip(video.clip, cfg)
        for a, _ in segments:  # a scene cut: no object on both sides of a boundary
            if a > 0:
                before = {o.appearance for o in video.clip.objects if o.visible_to == a}
                after = {o.appearance for o in video.clip.objects if o.visible_from == a}
                assert before and after and not before & after
        assert drawn.any(axis=(1, 2, 3)).all()  # every frame shows something


def test_scenes_captions_describe_their_frames(scenes):
    for video in scenes.videos:
        segment_texts = [video.clip.segment_caption(i)[0] for i in range(len(video.clip.segments))]
        if video.split == "train":
            assert set(segment_texts) <= {c.text for c in video.captions}
        else:
            assert len(video.captions) == SCENES_TINY.eval_captions
        for caption in video.captions:
            a, b = caption.frames
            named = [o for o in video.clip.objects if a <= o.visible_from and o.visible_to <= b]
            assert sorted(caption.text.replace(", then ", " while ").split(" while ")) == sorted(o.action for o in named)
            assert caption.kind == ("then" if ", then " in caption.text else "single" if len(named) == 1 else "while")


def test_each_evaluation_caption_is_true_of_its_own_clip_alone():
    videos = sample_world(world_config("scenes", n_train=5, n_val=50, n_test=300))
    for split in ("val", "test"):
        clips = [v for v in videos if v.split == split]
        captions = [c.text for v in clips for c in v.captions]
        assert len(set(captions)) == len(captions)
        segments_of = {v.video_id: {v.clip.segment_caption(i)[0] for i in range(len(v.clip.segments))} for v in clips}
        for v in clips:
            for caption in v.captions:
                for part in caption.text.split(", then "):
                    assert part in segments_of[v.video_id]
                    assert not any(part in segs for other, segs in segments_of.items() if other != v.video_id)
    kinds = Counter(c.kind for v in videos if v.split == "test" for c in v.captions)
    assert set(kinds) == set(KINDS)


def test_world_json_records_segments_and_caption_frames(scenes):
    stored = json.loads((scenes.root / "world.json").read_text())
    for entry, video in zip(stored["videos"], scenes.videos, strict=True):
        assert entry["segments"] == [list(s) for s in video.clip.segments]
        assert [(c["text"], c["kind"], tuple(c["caption_frames"])) for c in entry["captions"]] == \
            [(c.text, c.kind, c.frames) for c in video.captions]
    data = json.loads((scenes.root / "MSRVTT_data.json").read_text())
    assert [(s["video_id"], s["caption"]) for s in data["sentences"]] == \
        [(v.video_id, c.text) for v in scenes.videos for c in v.captions]


def test_scenes_settings_are_refused_in_the_objects_world_and_the_converse():
    with pytest.raises(ValueError, match="WorldConfig.then_share"):
        WorldConfig(then_share=0.5)
    with pytest.raises(ValueError, match="WorldConfig.twin_share"):
        world_config("scenes", twin_share=0.2)
    with pytest.raises(ValueError, match="WorldConfig.frames"):
        world_config("scenes", frames=8)  # 4 segments of at least 3 frames
    with pytest.raises(ValueError, match="WorldConfig.kind"):
        world_config("cartoons")


def test_an_interrupted_world_keeps_its_finished_videos(scenes, tmp_path):
    root = tmp_path / "resumed"
    shutil.copytree(scenes.root, root)
    (root / "world.json").unlink()
    (root / IN_PROGRESS).write_text(json.dumps(dataclasses.asdict(SCENES_TINY)))  # as generate_world leaves it
    kept = root / "videos" / "video1.mp4"
    stamp = kept.stat().st_mtime_ns
    (root / "videos" / "video0.mp4").unlink()
    (root / "videos" / "video2.partial-123.mp4").write_bytes(b"cut short")
    generate_world(root, SCENES_TINY, progress=False)
    assert kept.stat().st_mtime_ns == stamp  # not written again
    assert load_world(root).videos == scenes.videos and not list((root / "videos").glob("*partial*"))
    np.testing.assert_array_equal(decoded(load_world(root), "video0"), decoded(scenes, "video0"))
