"""Dataset adapters on tiny fixtures in each benchmark's native format (tests/fixtures_datasets.py).

Expected numbers are counted by hand from the fixture constants.
"""
from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import pytest

from glscl.data.adapters import (
    DatasetError,
    load_activitynet,
    load_dataset,
    load_didemo,
    load_lsmdc,
    load_msrvtt,
    load_msvd,
    lsmdc_movie,
)
from glscl.data.adapters.msvd import RestrictedUnpickler

try:  # pytest's default import mode puts tests/ itself on sys.path
    import fixtures_datasets as fx
except ImportError:  # tests/ made a package, or another import mode
    from tests import fixtures_datasets as fx


def _captions_of(split, video_id: str) -> list[str]:
    """Captions of one video of a split, in order."""
    index = split.video_ids.index(video_id)
    return [cap for cap, vid in zip(split.captions, split.caption_video) if vid == index]


# ----------------------------------------------------------------------------- MSR-VTT


def test_msrvtt_carved_val_and_1k_test(tmp_path: Path) -> None:
    root = fx.write_msrvtt(tmp_path)
    train = load_msrvtt(root, "train", val_size=2)
    val = load_msrvtt(root, "val", val_size=2)
    test = load_msrvtt(root, "test")
    # 9k list: video0..video5 with 3+2+2+1+2+1 = 11 captions, split 4 / 2 videos.
    assert (train.num_videos, val.num_videos) == (4, 2)
    assert set(train.video_ids) | set(val.video_ids) == {f"video{i}" for i in range(6)}
    assert not set(train.video_ids) & set(val.video_ids)
    assert train.num_captions + val.num_captions == 11
    # test: the JSFUSION rows only, one caption per video, the quoted comma kept.
    assert test.video_ids == ("video6", "video7")
    assert test.captions == ("a cat sleeps on a sofa, then wakes up", "a plane takes off")
    assert test.caption_video == (0, 1)
    assert test.video_paths[0] == root / "videos" / "video6.mp4"
    assert (train.dataset, train.name, test.name) == ("msrvtt", "train", "test")


def test_msrvtt_train_uses_all_captions_of_a_video(tmp_path: Path) -> None:
    train = load_msrvtt(fx.write_msrvtt(tmp_path), "train", val_size=0)
    assert train.num_videos == 6 and train.num_captions == 11
    assert _captions_of(train, "video0") == ["a man is singing on a stage", "a singer performs a song", "a man sings into a microphone"]


def test_msrvtt_val_file_is_used_and_leaves_train(tmp_path: Path) -> None:
    root = fx.write_msrvtt(tmp_path, with_val=True)
    val = load_msrvtt(root, "val", val_size=2)  # val_size is ignored when MSRVTT_val.csv exists
    train = load_msrvtt(root, "train")
    assert val.video_ids == ("video5",) and val.captions == ("a woman talks about makeup",)
    assert train.video_ids == ("video0", "video1", "video2", "video3", "video4")
    assert train.num_captions == 10


def test_msrvtt_video_dir_and_ext(tmp_path: Path) -> None:
    test = load_msrvtt(fx.write_msrvtt(tmp_path), "test", video_dir=tmp_path / "elsewhere", video_ext=".webm")
    assert test.video_paths[1] == tmp_path / "elsewhere" / "video7.webm"


def test_carved_val_is_deterministic_and_depends_on_seed(tmp_path: Path) -> None:
    root = fx.write_msrvtt(tmp_path)
    first = load_msrvtt(root, "val", val_size=2, seed=3)
    assert load_msrvtt(root, "val", val_size=2, seed=3) == first
    carved = {load_msrvtt(root, "val", val_size=2, seed=seed).video_ids for seed in range(8)}
    assert len(carved) > 1


def test_carved_val_never_touches_test(tmp_path: Path) -> None:
    msrvtt, anet = fx.write_msrvtt(tmp_path), fx.write_activitynet(tmp_path)
    for seed in range(4):
        assert not set(load_msrvtt(msrvtt, "val", val_size=3, seed=seed).video_ids) & {"video6", "video7"}
        val = load_activitynet(anet, "val", val_size=2, seed=seed)
        train = load_activitynet(anet, "train", val_size=2, seed=seed)
        assert val.num_videos == 2 and train.num_videos == 3
        assert not set(val.video_ids) & set(train.video_ids)
        assert not set(val.video_ids) & {"v_uqiMw7tQ1Cc", "v_bXdq2zI1Ms0"}


def test_val_file_overlapping_test_is_refused(tmp_path: Path) -> None:
    root = fx.write_msrvtt(tmp_path)
    (root / "MSRVTT_val.csv").write_text("video_id\nvideo5\nvideo7\n")
    with pytest.raises(DatasetError, match="MSRVTT_val.csv.*overlap the test split.*'video7'"):
        load_msrvtt(root, "val")


def test_val_size_must_leave_training_videos(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="val_size=6"):
        load_msrvtt(fx.write_msrvtt(tmp_path), "train", val_size=6)


# ----------------------------------------------------------------------------- MSVD


def test_msvd_splits_and_multi_caption_mapping(tmp_path: Path) -> None:
    root = fx.write_msvd(tmp_path)
    train, val, test = (load_msvd(root, split) for split in ("train", "val", "test"))
    assert (train.num_videos, train.num_captions) == (2, 5)
    assert (val.num_videos, val.num_captions) == (1, 2)
    assert test.video_ids == ("-AwoiGR6c8M_10_14", "-Cv5LsqKUXc_17_25")
    assert test.caption_video == (0, 0, 0, 1, 1)
    assert test.captions[:3] == ("a boy rides a bike", "a child cycles", "a kid on a bicycle")
    assert _captions_of(test, "-Cv5LsqKUXc_17_25") == ["a woman swims", "a lady is swimming"]
    # .mp4 found where it exists, .avi otherwise.
    assert [p.name for p in test.video_paths] == ["-AwoiGR6c8M_10_14.mp4", "-Cv5LsqKUXc_17_25.avi"]


def test_msvd_default_extension_when_no_file(tmp_path: Path) -> None:
    root = fx.write_msvd(tmp_path)
    val = load_msvd(root, "val", video_dir=tmp_path / "empty", video_ext=".mp4")
    assert val.video_paths == (tmp_path / "empty" / "-8y1Q0rA3n8_108_115.mp4",)


class _Hostile:
    """Unpickling this runs os.system (the classic pickle attack)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_msvd_malicious_pickle_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    root = fx.write_msvd(tmp_path)
    sentinel = tmp_path / "pwned"
    fx.write_msvd_pickle(root, {"-4wsuPCjDBc_5_15": [["a", "man"]], "x": _Hostile(f"touch {sentinel}")})
    with pytest.raises(DatasetError, match=r"raw-captions\.pkl: byte \d+: pickle: refused opcode"):
        load_msvd(root, "train", skip_bad=True)
    assert not sentinel.exists()


def test_restricted_unpickler_refuses_every_global(tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"
    for hostile in (_Hostile(f"touch {sentinel}"), {"ok": [["a"]], "set": {1, 2}, "type": list}):
        data = pickle.dumps(hostile)
        with pytest.raises(pickle.UnpicklingError, match="refused global"):
            RestrictedUnpickler(io.BytesIO(data)).load()
    assert not sentinel.exists()


@pytest.mark.parametrize(
    "obj, message",
    [
        ([["a", "b"]], "top level: structure: expected dict"),
        ({"-4wsuPCjDBc_5_15": "a man sings"}, "entry '-4wsuPCjDBc_5_15': captions: expected a list of token lists"),
        ({"-4wsuPCjDBc_5_15": [["a", 3]]}, r"entry '-4wsuPCjDBc_5_15': captions\[0\]: expected a list of str tokens"),
    ],
)
def test_msvd_pickle_with_wrong_structure(tmp_path: Path, obj: object, message: str) -> None:
    root = fx.write_msvd(tmp_path)
    fx.write_msvd_pickle(root, obj)
    with pytest.raises(DatasetError, match=r"raw-captions\.pkl: " + message) as err:
        load_msvd(root, "train")
    assert "\n" not in str(err.value)


def test_msvd_non_utf8_caption_in_pickle(tmp_path: Path) -> None:
    root = fx.write_msvd(tmp_path)
    captions = dict(fx.MSVD_CAPTIONS, **{"-8y1Q0rA3n8_108_115": [["bad", "\udcff"], ["a", "loaf", "is", "cut"]]})
    fx.write_msvd_pickle(root, captions)
    with pytest.raises(DatasetError, match=r"entry '-8y1Q0rA3n8_108_115': captions\[0\]: text is not valid UTF-8"):
        load_msvd(root, "val")
    val = load_msvd(root, "val", skip_bad=True)
    assert val.captions == ("a loaf is cut",) and len(val.skipped) == 1


# ----------------------------------------------------------------------------- DiDeMo


def test_didemo_paragraphs_in_file_order(tmp_path: Path) -> None:
    root = fx.write_didemo(tmp_path)
    train, val, test = (load_didemo(root, split) for split in ("train", "val", "test"))
    # train: the girl's three descriptions (entries 0, 2, 3) around the dog's (entry 1).
    assert train.video_ids == (fx.DIDEMO_GIRL, fx.DIDEMO_DOG)
    assert train.captions == ("a girl walks in. she sits down she waves at the camera", "the dog jumps")
    assert train.caption_video == (0, 1)
    assert (val.num_videos, val.num_captions) == (1, 1)
    assert test.captions == ("the crowd cheers the crowd sits down", "a car turns left")


def test_didemo_video_name_as_given_or_with_mp4(tmp_path: Path) -> None:
    train = load_didemo(fx.write_didemo(tmp_path), "train", check_videos=True)
    assert [p.name for p in train.video_paths] == [fx.DIDEMO_GIRL, f"{fx.DIDEMO_DOG}.mp4"]


# ----------------------------------------------------------------------------- LSMDC


def test_lsmdc_splits_and_movie_folders(tmp_path: Path) -> None:
    root = fx.write_lsmdc(tmp_path)
    train, val, test = (load_lsmdc(root, split, check_videos=True) for split in ("train", "val", "test"))
    assert [(s.num_videos, s.num_captions) for s in (train, val, test)] == [(3, 3), (2, 2), (2, 2)]
    assert train.captions[1] == "She looks at SOMEONE."
    clip = "0001_American_Beauty_00.00.51.926-00.00.54.129"
    assert train.video_paths[0] == root / "videos" / "0001_American_Beauty" / f"{clip}.avi"
    assert test.video_paths[0].parent.name == "3034_IDES_OF_MARCH"


def test_lsmdc_movie_parsing() -> None:
    assert lsmdc_movie("0001_American_Beauty_00.00.51.926-00.00.54.129") == "0001_American_Beauty"
    assert lsmdc_movie("1004_Juno_00.01.06.215-00.01.09.102") == "1004_Juno"
    assert lsmdc_movie("no-underscore") is None
    assert lsmdc_movie("trailing_") is None


# ----------------------------------------------------------------------------- ActivityNet


def test_activitynet_paragraphs_and_test_is_val_1(tmp_path: Path) -> None:
    root = fx.write_activitynet(tmp_path)
    train = load_activitynet(root, "train", val_size=0)
    test = load_activitynet(root, "test")
    assert (train.num_videos, train.num_captions) == (5, 5)
    assert _captions_of(train, "v_QOlSCBRmfWY") == [
        "A young woman is seen standing in a room. She dances around the room. She then bows."
    ]
    assert test.video_ids == ("v_uqiMw7tQ1Cc", "v_bXdq2zI1Ms0")
    assert test.captions == ("A dog fetches a stick. It brings it back.", "A man climbs a rock wall.")
    assert [p.name for p in test.video_paths] == ["v_uqiMw7tQ1Cc.mp4", "v_bXdq2zI1Ms0.webm"]


def test_activitynet_ids_without_v_prefix(tmp_path: Path) -> None:
    root = fx.write_activitynet(tmp_path)
    (root / "val_1.json").write_text('{"bXdq2zI1Ms0": {"duration": 5.0, "timestamps": [[0, 5]], "sentences": ["A man climbs."]}}')
    test = load_activitynet(root, "test", check_videos=True)
    assert test.video_ids == ("bXdq2zI1Ms0",)
    assert test.video_paths == (root / "videos" / "v_bXdq2zI1Ms0.webm",)


# ----------------------------------------------------------------------------- dispatcher


def test_load_dataset_dispatches_and_names_known_datasets(tmp_path: Path) -> None:
    root = fx.write_lsmdc(tmp_path)
    assert load_dataset("LSMDC", root, "val") == load_lsmdc(root, "val")
    assert load_dataset("MSR-VTT", fx.write_msrvtt(tmp_path), "test").num_videos == 2
    with pytest.raises(ValueError, match="unknown dataset 'howto100m'; known datasets: activitynet, didemo, lsmdc, msrvtt, msvd"):
        load_dataset("howto100m", root, "test")
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        load_dataset("lsmdc", root, "dev")


# ----------------------------------------------------------------------------- bad input, per item

# (dataset, split, kwargs, file, old bytes, new bytes, row, field, captions left with skip_bad=True)
BAD_ITEMS = [
    ("msrvtt", "train", {"val_size": 0}, "MSRVTT_data.json", b'"a dog runs in a park"', b'"  "', "sentences[1]", "caption", 10),
    ("msrvtt", "train", {"val_size": 0}, "MSRVTT_data.json", b'"caption": "a car drives', b'"text": "a car drives',
     "sentences[6]", "caption", 10),
    ("msrvtt", "train", {"val_size": 0}, "MSRVTT_data.json", b"two kids", b"two \xff\xfekids", "sentences[7]", "caption", 10),
    ("msrvtt", "train", {"val_size": 0}, "MSRVTT_train.9k.csv", b"video3", b"video99", "line 5", "video_id", 10),
    ("msrvtt", "test", {}, "MSRVTT_JSFUSION_test.csv", b"a plane takes", b"a plane \xff takes", "line 3", "sentence", 1),
    ("msvd", "test", {}, "test_list.txt", b"_17_25\n", b"_17_25\nghost_1_2\n", "line 3", "video_id", 5),
    ("msvd", "test", {}, "test_list.txt", b"-AwoiGR6c8M_10_14", b"-AwoiGR6c8M_10_14\xff", "line 1", "video_id", 2),
    ("didemo", "train", {}, "train_data.json", b'"description": "the dog', b'"descr": "the dog', "entry 1", "description", 1),
    ("didemo", "train", {}, "train_data.json", b"she sits down", b"she sits \xe9 down", "entry 2", "description", 2),
    ("didemo", "test", {}, "test_data.json", b'"a car turns left"', b'""', "entry 1", "description", 1),
    ("lsmdc", "train", {}, "LSMDC16_annos_training.csv", b"She looks", b"She \xff looks", "line 2", "sentence", 2),
    ("lsmdc", "train", {}, "LSMDC16_annos_training.csv", b"SOMEONE drinks from a jug.", b"", "line 3", "sentence", 2),
    ("lsmdc", "val", {}, "LSMDC16_annos_val.csv", b"\t00.02.00.000\t00.02.03.000\t", b"\t", "line 1", "columns", 1),
    ("activitynet", "test", {}, "val_1.json", b'" It brings it back."', b'" "', "entry 'v_uqiMw7tQ1Cc'", "sentences[1]", 2),
    ("activitynet", "test", {}, "val_1.json", b"rock wall", b"rock \xc3 wall", "entry 'v_bXdq2zI1Ms0'", "sentences[0]", 1),
    ("activitynet", "test", {}, "val_1.json", b'"sentences": ["A man climbs', b'"sents": ["A man climbs',
     "entry 'v_bXdq2zI1Ms0'", "sentences", 1),
]
BAD_IDS = [f"{case[0]}-{case[3]}-{case[6]}-{case[7]}" for case in BAD_ITEMS]


@pytest.mark.parametrize("dataset, split, kwargs, file, old, new, row, field, left", BAD_ITEMS, ids=BAD_IDS)
def test_bad_item_raises_one_line(tmp_path, dataset, split, kwargs, file, old, new, row, field, left) -> None:
    root = fx.WRITERS[dataset](tmp_path)
    fx.replace_bytes(root / file, old, new)
    with pytest.raises(DatasetError) as err:
        load_dataset(dataset, root, split, **kwargs)
    message = str(err.value)
    assert message.startswith(f"{root / file}: {row}: {field}: "), message
    assert "\n" not in message


@pytest.mark.parametrize("dataset, split, kwargs, file, old, new, row, field, left", BAD_ITEMS, ids=BAD_IDS)
def test_bad_item_skipped_and_recorded(tmp_path, dataset, split, kwargs, file, old, new, row, field, left) -> None:
    root = fx.WRITERS[dataset](tmp_path)
    fx.replace_bytes(root / file, old, new)
    loaded = load_dataset(dataset, root, split, skip_bad=True, **kwargs)
    assert loaded.num_captions == left
    skipped_file, skipped_row, reason = loaded.skipped[0]
    assert (skipped_file, skipped_row) == (str(root / file), row)
    assert reason.startswith(f"{field}: ")
    assert "skipped" in loaded.summary()


def test_video_left_without_captions_is_recorded_too(tmp_path: Path) -> None:
    root = fx.write_didemo(tmp_path)
    fx.replace_bytes(root / "train_data.json", b'"the dog jumps"', b'""')
    train = load_didemo(root, "train", skip_bad=True)
    assert train.video_ids == (fx.DIDEMO_GIRL,)
    assert [row for _, row, _ in train.skipped] == ["entry 1", "entry 1"]
    assert train.skipped[1][2] == f"description: video {fx.DIDEMO_DOG!r} has no usable description"


# ----------------------------------------------------------------------------- bad input, per file


@pytest.mark.parametrize(
    "dataset, split, missing",
    [
        ("msrvtt", "train", "MSRVTT_data.json"),
        ("msrvtt", "test", "MSRVTT_JSFUSION_test.csv"),
        ("msvd", "val", "raw-captions.pkl"),
        ("msvd", "test", "test_list.txt"),
        ("didemo", "test", "test_data.json"),
        ("lsmdc", "test", "LSMDC16_challenge_1000_publictect.csv"),
        ("activitynet", "test", "val_1.json"),
    ],
)
def test_missing_annotation_file_always_raises(tmp_path: Path, dataset: str, split: str, missing: str) -> None:
    root = fx.WRITERS[dataset](tmp_path)
    (root / missing).unlink()
    kwargs = {"val_size": 0} if dataset == "msrvtt" else {}
    with pytest.raises(DatasetError) as err:
        load_dataset(dataset, root, split, skip_bad=True, **kwargs)
    assert str(err.value) == f"{root / missing}: missing annotation file"


@pytest.mark.parametrize(
    "file, old, new, split, column",
    [
        ("MSRVTT_train.9k.csv", b"video_id\n", b"vid\n", "train", "video_id"),
        ("MSRVTT_JSFUSION_test.csv", b",sentence\n", b",caption\n", "test", "sentence"),
    ],
)
def test_missing_csv_column_always_raises(tmp_path: Path, file: str, old: bytes, new: bytes, split: str, column: str) -> None:
    root = fx.write_msrvtt(tmp_path)
    fx.replace_bytes(root / file, old, new)
    with pytest.raises(DatasetError, match=f"{file}: line 1: header: missing column '{column}'"):
        load_msrvtt(root, split, val_size=0, skip_bad=True)


def test_invalid_json_names_the_line(tmp_path: Path) -> None:
    root = fx.write_didemo(tmp_path)
    (root / "val_data.json").write_text('[\n{"video": "a.mp4",\n "description": }\n]')
    # line 3 is ' "description": }': the value is missing where '}' stands, column 17
    with pytest.raises(DatasetError, match=r"val_data\.json: line 3, column 17: json: Expecting value"):
        load_didemo(root, "val", skip_bad=True)


def test_wrong_json_shape(tmp_path: Path) -> None:
    root = fx.write_activitynet(tmp_path)
    (root / "val_1.json").write_text('[{"sentences": ["a"]}]')
    with pytest.raises(DatasetError, match=r"val_1\.json: top level: structure: expected a JSON object of videos, got list"):
        load_activitynet(root, "test")


# ----------------------------------------------------------------------------- video files


def test_missing_video_files_only_checked_on_request(tmp_path: Path) -> None:
    root = fx.write_lsmdc(tmp_path)
    clip = "0011_Gandhi_00.02.05.100-00.02.07.900"
    (root / "videos" / "0011_Gandhi" / f"{clip}.avi").unlink()
    assert load_lsmdc(root, "val").num_videos == 2
    with pytest.raises(DatasetError, match=r"LSMDC16_annos_val\.csv: line 2: video: video file not found: .*0011_Gandhi"):
        load_lsmdc(root, "val", check_videos=True)
    val = load_lsmdc(root, "val", check_videos=True, skip_bad=True)
    assert val.num_videos == 1 and val.skipped[0][:2] == (str(root / "LSMDC16_annos_val.csv"), "line 2")


# ----------------------------------------------------------------------------- data.video_ext, flat LSMDC, sources


def test_lsmdc_accepts_a_flat_folder_of_mp4_files(tmp_path: Path) -> None:
    root = fx.write_lsmdc(tmp_path)
    flat = tmp_path / "flat"
    flat.mkdir()
    clips = [clip for clip, _ in fx.LSMDC["LSMDC16_annos_val.csv"]]
    for clip in clips:
        (flat / f"{clip}.mp4").touch()
    val = load_lsmdc(root, "val", video_dir=flat, video_ext=".mp4", check_videos=True)
    assert val.video_paths == tuple(flat / f"{clip}.mp4" for clip in clips)
    # the native layout <movie>/<clip>.avi is still found first
    assert load_lsmdc(root, "val").video_paths[0] == root / "videos" / "0011_Gandhi" / f"{clips[0]}.avi"


@pytest.mark.parametrize("dataset, split, expected", [
    ("msrvtt", "test", ["video6.webm", "video7.webm"]),
    ("msvd", "test", ["-AwoiGR6c8M_10_14.webm", "-Cv5LsqKUXc_17_25.webm"]),
    ("didemo", "test", ["test_video_1.webm", "test_video_2.webm"]),
    ("lsmdc", "test", ["3034_IDES_OF_MARCH_00.03.10.000-00.03.12.000.webm", "3035_INSIDE_MAN_01.00.05.000-01.00.07.000.webm"]),
    ("activitynet", "test", ["v_uqiMw7tQ1Cc.webm", "v_bXdq2zI1Ms0.webm"]),
])
def test_video_ext_is_used_by_every_adapter(tmp_path: Path, dataset: str, split: str, expected: list[str]) -> None:
    root = fx.WRITERS[dataset](tmp_path)
    loaded = load_dataset(dataset, root, split, video_dir=tmp_path / "none", video_ext=".webm")
    assert [p.name for p in loaded.video_paths] == expected


def test_native_extensions_when_video_ext_is_none(tmp_path: Path) -> None:
    anet = load_activitynet(fx.write_activitynet(tmp_path), "test")
    assert [p.suffix for p in anet.video_paths] == [".mp4", ".webm"]  # whichever exists (fixture: v_bXdq2zI1Ms0 is .webm)


def test_every_split_names_its_annotation_file(tmp_path: Path) -> None:
    root = fx.write_msrvtt(tmp_path)
    assert load_msrvtt(root, "train", val_size=2).source == (str(root / "MSRVTT_train.9k.csv"),)
    assert load_msrvtt(root, "test").source == (str(root / "MSRVTT_JSFUSION_test.csv"),)
    assert load_msvd(fx.write_msvd(tmp_path), "val").source == (str(tmp_path / "msvd" / "val_list.txt"),)
