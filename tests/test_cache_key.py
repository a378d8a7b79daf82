import hashlib
import json
import os
from pathlib import Path

from glscl.config import ModelConfig
from glscl.data.cache import cache_key
from glscl.data.splits import RetrievalSplit

MODEL = ModelConfig(backbone="glscl-tiny", num_frames=8, max_words=32, compact_vocab=False)


def _split(paths):
    return RetrievalSplit("world", "test", ("a", "b"), tuple(Path(p) for p in paths), ("one", "two"), (0, 1))


def test_the_cache_key_does_not_depend_on_how_a_path_is_spelled(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    relative = _split(["videos/a.mp4", "videos/b.mp4"])
    absolute = _split([tmp_path / "videos" / "a.mp4", tmp_path / "videos" / "b.mp4"])
    dotted = _split([f"videos{os.sep}..{os.sep}videos/a.mp4", "./videos/b.mp4"])
    keys = {cache_key(MODEL, 1.0, s, "file:w", "") for s in (relative, absolute, dotted)}
    assert len(keys) == 1
    moved = _split([tmp_path / "other" / "a.mp4", tmp_path / "videos" / "b.mp4"])
    assert cache_key(MODEL, 1.0, moved, "file:w", "") not in keys
    four = ModelConfig(backbone="glscl-tiny", num_frames=4, max_words=32, compact_vocab=False)
    assert cache_key(four, 1.0, relative, "file:w", "") not in keys  # and the sampling still counts
    assert cache_key(MODEL, 2.0, relative, "file:w", "") not in keys
    assert cache_key(MODEL, 1.0, relative, "file:v", "") not in keys  # and the weights


def test_the_cache_key_keeps_the_value_earlier_versions_indexed(tmp_path, monkeypatch):
    """The key is the hash earlier versions named their index entries by (sources/<key>.json), so the caches
    they built are found: sha256 of the sorted JSON of these fields, first 20 hex digits."""
    monkeypatch.chdir(tmp_path)
    split = _split(["videos/a.mp4", "videos/b.mp4"])
    config = (Path(__file__).resolve().parents[1] / "glscl" / "model" / "model_configs" / "glscl-tiny.json").read_text()
    meta = {"backbone": "glscl-tiny", "config": config, "weights": "file:w", "compact_vocab": False, "vocab_source": None,
            "max_words": 32, "num_frames": 8, "sample_fps": 1.0, "dataset": "world", "split": "test",
            "videos": ["a", "b"], "paths": [str(tmp_path / "videos" / "a.mp4"), str(tmp_path / "videos" / "b.mp4")],
            "captions": ["one", "two"], "caption_video": [0, 1]}
    expected = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:20]
    assert cache_key(MODEL, 1.0, split, "file:w", "ignored without compact_vocab") == expected
