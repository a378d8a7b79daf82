"""Tiny copies of the five benchmarks, written in each dataset's exact native file format.

Every ``write_<dataset>(root)`` writes the annotation files and empty placeholder videos into
``root/<dataset>`` and returns that folder. The content is the literal constants below, small
enough to count by hand; the tests state the counts they expect from these constants.
"""
from __future__ import annotations

import csv
import json
import pickle
from pathlib import Path

# ----------------------------------------------------------------------------- MSR-VTT
# (video_id, caption) in MSRVTT_data.json order. Per video: video0 3, video1 2, video2 2,
# video3 1, video4 2, video5 1, video6 2, video7 1 (14 sentences).
MSRVTT_SENTENCES = [
    ("video0", "a man is singing on a stage"),
    ("video1", "a dog runs in a park"),
    ("video0", "a singer performs a song"),
    ("video2", "people cook pasta in a kitchen"),
    ("video0", "a man sings into a microphone"),
    ("video1", "a brown dog chases a ball"),
    ("video3", "a car drives down a road"),
    ("video4", "two kids play football"),
    ("video2", "a chef stirs a pot"),
    ("video4", "children kick a ball on grass"),
    ("video5", "a woman talks about makeup"),
    ("video6", "a cat sleeps on a sofa"),
    ("video7", "a plane takes off"),
    ("video6", "a kitten naps"),
]
MSRVTT_TRAIN_9K = ["video0", "video1", "video2", "video3", "video4", "video5"]  # 11 captions
MSRVTT_VAL = ["video5"]  # written only with with_val=True
# 1k-A style test rows (video_id, sentence): one caption per video, one with a comma (quoted).
MSRVTT_TEST = [("video6", "a cat sleeps on a sofa, then wakes up"), ("video7", "a plane takes off")]


def write_msrvtt(root: Path, *, with_val: bool = False) -> Path:
    """MSRVTT_data.json, MSRVTT_train.9k.csv, MSRVTT_JSFUSION_test.csv (+ MSRVTT_val.csv), videos."""
    folder = root / "msrvtt"
    folder.mkdir(parents=True)
    video_ids = sorted({vid for vid, _ in MSRVTT_SENTENCES})
    data = {
        "info": {"contributor": "fixture", "year": "2016"},
        "videos": [{"category": 0, "url": "", "video_id": vid, "split": "train", "id": i} for i, vid in enumerate(video_ids)],
        "sentences": [{"caption": cap, "video_id": vid, "sen_id": i} for i, (vid, cap) in enumerate(MSRVTT_SENTENCES)],
    }
    (folder / "MSRVTT_data.json").write_text(json.dumps(data), encoding="utf-8")
    _write_csv(folder / "MSRVTT_train.9k.csv", ["video_id"], [[vid] for vid in MSRVTT_TRAIN_9K])
    test_rows = [[i, f"ret{i}", f"msr{vid[5:]}", vid, sentence] for i, (vid, sentence) in enumerate(MSRVTT_TEST)]
    _write_csv(folder / "MSRVTT_JSFUSION_test.csv", ["", "key", "vid_key", "video_id", "sentence"], test_rows)
    if with_val:
        _write_csv(folder / "MSRVTT_val.csv", ["video_id"], [[vid] for vid in MSRVTT_VAL])
    _touch_videos(folder / "videos", [f"{vid}.mp4" for vid in video_ids])
    return folder


# ----------------------------------------------------------------------------- MSVD
MSVD_LISTS = {
    "train": ["-4wsuPCjDBc_5_15", "-7KMZQEsJW4_205_208"],
    "val": ["-8y1Q0rA3n8_108_115"],
    "test": ["-AwoiGR6c8M_10_14", "-Cv5LsqKUXc_17_25"],
}
# video id -> list of token lists; "zz_unlisted_1_2" is in no list and must be ignored.
MSVD_CAPTIONS = {
    "-4wsuPCjDBc_5_15": [["a", "man", "sings"], ["a", "man", "is", "singing"]],
    "-7KMZQEsJW4_205_208": [["a", "cat", "jumps"], ["the", "cat", "leaps"], ["a", "kitten", "is", "jumping"]],
    "-8y1Q0rA3n8_108_115": [["someone", "slices", "bread"], ["a", "loaf", "is", "cut"]],
    "-AwoiGR6c8M_10_14": [["a", "boy", "rides", "a", "bike"], ["a", "child", "cycles"], ["a", "kid", "on", "a", "bicycle"]],
    "-Cv5LsqKUXc_17_25": [["a", "woman", "swims"], ["a", "lady", "is", "swimming"]],
    "zz_unlisted_1_2": [["nobody", "uses", "this"]],
}
MSVD_MP4 = {"-AwoiGR6c8M_10_14"}  # stored as .mp4; every other video is .avi


def write_msvd(root: Path) -> Path:
    """{train,val,test}_list.txt, raw-captions.pkl (a plain dict, as the dataset ships it), videos."""
    folder = root / "msvd"
    folder.mkdir(parents=True)
    for split, ids in MSVD_LISTS.items():
        (folder / f"{split}_list.txt").write_text("".join(f"{vid}\n" for vid in ids), encoding="utf-8")
    write_msvd_pickle(folder, MSVD_CAPTIONS)
    listed = [vid for ids in MSVD_LISTS.values() for vid in ids]
    _touch_videos(folder / "videos", [f"{vid}.mp4" if vid in MSVD_MP4 else f"{vid}.avi" for vid in listed])
    return folder


def write_msvd_pickle(folder: Path, obj: object) -> Path:
    """Write ``obj`` as ``raw-captions.pkl`` (used for hostile and malformed pickles too)."""
    path = folder / "raw-captions.pkl"
    path.write_bytes(pickle.dumps(obj))
    return path


# ----------------------------------------------------------------------------- DiDeMo
DIDEMO_GIRL = "23278412@N00_2877418164_f44f0cd39e.mov"  # file exists under this exact name
DIDEMO_DOG = "10015567@N08_3655084291_d8b58466fa"  # no extension: the file is <name>.mp4
# (video, description) per split, in file order.
DIDEMO = {
    "train": [
        (DIDEMO_GIRL, "a girl walks in."),
        (DIDEMO_DOG, "the dog jumps"),
        (DIDEMO_GIRL, "she sits down"),
        (DIDEMO_GIRL, "she waves at the camera"),
    ],
    "val": [
        ("val_video_1.mp4", "a bird lands"),
        ("val_video_1.mp4", "it flies away"),
    ],
    "test": [
        ("test_video_1.mp4", "the crowd cheers"),
        ("test_video_2.mp4", "a car turns left"),
        ("test_video_1.mp4", "the crowd sits down"),
    ],
}


def write_didemo(root: Path) -> Path:
    """{train,val,test}_data.json (a list of moment entries), videos."""
    folder = root / "didemo"
    folder.mkdir(parents=True)
    for split, rows in DIDEMO.items():
        entries = [
            {"annotation_id": i, "description": text, "video": video, "times": [[0, 0], [0, 1]], "num_segments": 6}
            for i, (video, text) in enumerate(rows)
        ]
        (folder / f"{split}_data.json").write_text(json.dumps(entries), encoding="utf-8")
    names = {video for rows in DIDEMO.values() for video, _ in rows}
    _touch_videos(folder / "videos", [name if name != DIDEMO_DOG else f"{name}.mp4" for name in names])
    return folder


# ----------------------------------------------------------------------------- LSMDC
# (clip id, sentence) per annotation file; times are filled in by the writer.
LSMDC = {
    "LSMDC16_annos_training.csv": [
        ("0001_American_Beauty_00.00.51.926-00.00.54.129", "SOMEONE walks down the street."),
        ("0001_American_Beauty_00.00.56.224-00.00.58.461", "She looks at SOMEONE."),
        ("1004_Juno_00.01.06.215-00.01.09.102", "SOMEONE drinks from a jug."),
    ],
    "LSMDC16_annos_val.csv": [
        ("0011_Gandhi_00.02.00.000-00.02.03.000", "A crowd gathers."),
        ("0011_Gandhi_00.02.05.100-00.02.07.900", "SOMEONE speaks."),
    ],
    "LSMDC16_challenge_1000_publictect.csv": [
        ("3034_IDES_OF_MARCH_00.03.10.000-00.03.12.000", "He opens the door."),
        ("3035_INSIDE_MAN_01.00.05.000-01.00.07.000", "The men wait."),
    ],
}


def write_lsmdc(root: Path) -> Path:
    """The three tab-separated annotation files (6 columns, no header), videos/<movie>/<clip>.avi."""
    folder = root / "lsmdc"
    folder.mkdir(parents=True)
    clips = []
    for name, rows in LSMDC.items():
        lines = []
        for clip, sentence in rows:
            start, end = clip.rsplit("_", 1)[1].split("-")
            lines.append("\t".join([clip, start, end, start, end, sentence]) + "\n")
            clips.append(clip)
        (folder / name).write_text("".join(lines), encoding="utf-8")
    _touch_videos(folder / "videos", [f"{clip.rsplit('_', 1)[0]}/{clip}.avi" for clip in clips])
    return folder


# ----------------------------------------------------------------------------- ActivityNet Captions
# video id -> sentences (with the leading spaces the real files have), in file order.
ACTIVITYNET = {
    "train.json": {
        "v_QOlSCBRmfWY": [" A young woman is seen standing in a room.", " She dances around the room.", " She then bows. "],
        "v_ehGHCYKzyZ8": ["A man mows the lawn.", " He stops to drink water."],
        "v_nwznKOuZM7w": ["Two people play tennis."],
        "v_ogQozSI5V8U": ["A chef chops onions.", "She fries them."],
        "v_RJpWgi0EaUE": ["Kids build a sandcastle.", "A wave knocks it down."],
    },
    "val_1.json": {
        "v_uqiMw7tQ1Cc": ["A dog fetches a stick.", " It brings it back."],
        "v_bXdq2zI1Ms0": ["A man climbs a rock wall."],
    },
}
ACTIVITYNET_EXT = {"v_ehGHCYKzyZ8": ".mkv", "v_bXdq2zI1Ms0": ".webm"}  # every other video is .mp4


def write_activitynet(root: Path) -> Path:
    """train.json, val_1.json (video id -> sentences, timestamps, duration), videos v_<id>.*."""
    folder = root / "activitynet"
    folder.mkdir(parents=True)
    for name, videos in ACTIVITYNET.items():
        data = {
            vid: {"duration": 10.0 * len(sents), "timestamps": [[10.0 * i, 10.0 * i + 9] for i in range(len(sents))], "sentences": sents}
            for vid, sents in videos.items()
        }
        (folder / name).write_text(json.dumps(data), encoding="utf-8")
    ids = [vid for videos in ACTIVITYNET.values() for vid in videos]
    _touch_videos(folder / "videos", [f"{vid}{ACTIVITYNET_EXT.get(vid, '.mp4')}" for vid in ids])
    return folder


WRITERS = {
    "msrvtt": write_msrvtt,
    "msvd": write_msvd,
    "didemo": write_didemo,
    "lsmdc": write_lsmdc,
    "activitynet": write_activitynet,
}


# ----------------------------------------------------------------------------- helpers


def replace_bytes(path: Path, old: bytes, new: bytes) -> None:
    """Corrupt a fixture file in place: replace ``old`` (which must occur exactly once) by ``new``."""
    data = path.read_bytes()
    assert data.count(old) == 1, f"{old!r} occurs {data.count(old)} times in {path}"
    path.write_bytes(data.replace(old, new))


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    """A comma-separated file with a header row (quoting as Python's csv module does)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _touch_videos(folder: Path, names: list[str]) -> None:
    """Empty placeholder video files (the adapters never decode them)."""
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


# ----------------------------------------------------------------------------- hostile and broken files


class Hostile:
    """Unpickling this creates the file ``marker``: a stand-in for any code a pickle can run."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def hostile_pickle(marker: Path) -> bytes:
    """A plain pickle of a dict that runs ``open(marker, "w")`` when unpickled."""
    return pickle.dumps({"weights": Hostile(marker)})


def break_video(path: Path, how: str) -> Path:
    """Replace a video file by a broken one: 'garbage' bytes, 'truncated' (first 300 bytes of the
    real file), 'empty' (zero bytes) or 'missing' (removed)."""
    data = path.read_bytes() if path.exists() else b""
    path.unlink(missing_ok=True)
    if how == "garbage":
        path.write_bytes(b"this is not a video\n" * 50)
    elif how == "truncated":
        path.write_bytes(data[:300])
    elif how == "empty":
        path.write_bytes(b"")
    elif how != "missing":
        raise ValueError(f"unknown way to break a video: {how!r}")
    return path
