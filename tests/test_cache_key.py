import os
from pathlib import Path
from types import SimpleNamespace

from glscl.data.cache import cache_key
from glscl.data.splits import RetrievalSplit

BACKBONE = SimpleNamespace(image_size=64, preprocess_cfg={"mean": (0.5, 0.5, 0.5), "std": (0.2, 0.2, 0.2)},
                           context_length=32, tokenizer=SimpleNamespace(vocab=None))


def _split(paths):
    return RetrievalSplit("world", "test", ("a", "b"), tuple(Path(p) for p in paths), ("one", "two"), (0, 1))


def test_the_cache_key_does_not_depend_on_how_a_path_is_spelled(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    relative = _split(["videos/a.mp4", "videos/b.mp4"])
    absolute = _split([tmp_path / "videos" / "a.mp4", tmp_path / "videos" / "b.mp4"])
    dotted = _split([f"videos{os.sep}..{os.sep}videos/a.mp4", "./videos/b.mp4"])
    keys = {cache_key(BACKBONE, s, 8, 1.0, weights="w") for s in (relative, absolute, dotted)}
    assert len(keys) == 1
    moved = _split([tmp_path / "other" / "a.mp4", tmp_path / "videos" / "b.mp4"])
    assert cache_key(BACKBONE, moved, 8, 1.0, weights="w") not in keys
    assert cache_key(BACKBONE, relative, 4, 1.0, weights="w") not in keys  # and the sampling still counts
