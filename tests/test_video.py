"""Frame sampling, decoding with its errors, and the frame transform."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from glscl.data.video import ClipTransform, VideoError, load_clip, sample_frame_indices
from glscl.data.world import write_mp4


def grey_video(path, levels, fps=1.0, size=32):
    """A video whose frame i is a flat grey of value levels[i]."""
    frames = np.broadcast_to(np.asarray(levels, np.uint8)[:, None, None, None], (len(levels), size, size, 3))
    write_mp4(path, frames, fps)
    return path


def assert_grey_levels(frames: torch.Tensor, expected: list[int]) -> None:
    """Each frame's mean value is within 2 of the expected grey level."""
    levels = frames.float().mean(dim=(1, 2, 3))
    assert (levels - torch.tensor(expected, dtype=torch.float32)).abs().max() <= 2, levels


@pytest.mark.parametrize("native_frames, native_fps, num_frames, sample_fps, expected", [
    (30, 30, 4, 1.0, [0]),                                 # 1 s: one frame at 1 fps
    (75, 30, 4, 1.0, [0, 30, 60]),                         # 2.5 s: 3 frames, fewer than 4
    (250, 25, 4, 1.0, [0, 75, 150, 225]),                  # 10 s: 0, 25, .., 225; linspace(0, 9, 4) = 0, 3, 6, 9
    (300, 25, 5, 1.0, [0, 75, 150, 200, 275]),             # 12 s: linspace(0, 11, 5) = 0, 2.75, 5.5, 8.25, 11
    (100, 25, 8, 2.0, [0, 12, 25, 38, 50, 62, 75, 88]),    # 2 fps: j * 12.5 rounded half to even
    (8, 1, 12, 1.0, list(range(8))),                       # the world: every frame, 4 to pad
    (8, 1, 12, 4.0, list(range(8))),                       # never more often than the native frames
    (0, 25, 4, 1.0, []),
])
def test_sample_frame_indices_by_hand(native_frames, native_fps, num_frames, sample_fps, expected):
    indices, num_valid = sample_frame_indices(native_frames, native_fps, num_frames, sample_fps)
    assert indices.tolist() == expected and num_valid == len(expected)


@pytest.mark.parametrize("args", [(10, 25, 0), (10, 0, 4), (10, 25, 4, 0.0), (10, float("nan"), 4)])
def test_sample_frame_indices_rejects_bad_arguments(args):
    with pytest.raises(ValueError):
        sample_frame_indices(*args)


def test_load_clip_pads_and_masks(tmp_path):
    path = grey_video(tmp_path / "five.mp4", [20, 60, 100, 140, 180])
    frames, mask = load_clip(path, 8)
    assert frames.shape == (8, 32, 32, 3) and frames.dtype == torch.uint8
    assert mask.tolist() == [True] * 5 + [False] * 3
    assert_grey_levels(frames[:5], [20, 60, 100, 140, 180])
    assert not frames[5:].any()


def test_load_clip_samples_one_frame_per_second_then_uniformly(tmp_path):
    levels = [10 + 12 * i for i in range(16)]
    frames, mask = load_clip(grey_video(tmp_path / "long.mp4", levels), 4)  # 16 s -> frames 0, 5, 10, 15
    assert mask.all()
    assert_grey_levels(frames, [levels[i] for i in (0, 5, 10, 15)])
    frames, mask = load_clip(grey_video(tmp_path / "fast.mp4", levels[:12], fps=4), 8)  # 3 s at 4 fps -> 0, 4, 8
    assert mask.tolist() == [True] * 3 + [False] * 5
    assert_grey_levels(frames[:3], [levels[i] for i in (0, 4, 8)])


def test_load_clip_resizes_when_asked(tmp_path):
    frames, _ = load_clip(grey_video(tmp_path / "v.mp4", [50, 90], size=64), 2, size=32)
    assert frames.shape == (2, 32, 32, 3)


def bad_files(tmp_path):
    real = grey_video(tmp_path / "real.mp4", [40 * i for i in range(6)]).read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(real[: len(real) // 2])
    (tmp_path / "text.mp4").write_text("this is not a video\n")
    (tmp_path / "empty.mp4").write_bytes(b"")
    return ["missing.mp4", "truncated.mp4", "text.mp4", "empty.mp4"]


def test_bad_videos_raise_one_line_video_errors(tmp_path):
    for name in bad_files(tmp_path):
        with pytest.raises(VideoError) as caught:
            load_clip(tmp_path / name, 4)
        message = str(caught.value)
        assert name in message and "\n" not in message, message
        error = caught.value  # no decord traceback chained to it
        assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
        assert isinstance(error, RuntimeError)


def test_transform_shape_normalisation_and_zero_padding():
    frames = torch.zeros(4, 48, 64, 3, dtype=torch.uint8)
    frames[:2] = 128
    mask = torch.tensor([True, True, False, False])
    transform = ClipTransform(image_size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    out = transform(frames, mask)
    assert out.shape == (4, 3, 32, 32) and out.dtype == torch.float32
    torch.testing.assert_close(out[:2], torch.full((2, 3, 32, 32), (128 / 255 - 0.5) / 0.25))
    assert (out[2:] == 0).all()
    assert (ClipTransform(image_size=32)(frames, torch.zeros(4, dtype=torch.bool)) == 0).all()


def test_transform_crops_the_centred_square_without_augmentation():
    frames = torch.zeros(1, 32, 64, 3, dtype=torch.uint8)
    frames[0, :, 16:48] = 255  # the centred 32 x 32 square is white, the sides black
    out = ClipTransform(image_size=16, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))(frames, torch.tensor([True]))
    torch.testing.assert_close(out, torch.ones(1, 3, 16, 16))


def test_augmentation_is_one_draw_per_clip():
    image = torch.randint(0, 256, (1, 64, 64, 3), dtype=torch.uint8)
    frames = torch.cat([image.expand(5, -1, -1, -1), torch.zeros(1, 64, 64, 3, dtype=torch.uint8)])
    mask = torch.tensor([True] * 5 + [False])
    transform = ClipTransform(image_size=32, augment=True, crop_scale=(0.3, 0.6), brightness=0.3)
    out = transform(frames, mask, torch.Generator().manual_seed(0))
    for t in range(1, 5):
        assert torch.equal(out[t], out[0])
    assert (out[5] == 0).all()
    again = transform(frames, mask, torch.Generator().manual_seed(0))
    other = transform(frames, mask, torch.Generator().manual_seed(1))
    plain = ClipTransform(image_size=32)(frames, mask)
    assert torch.equal(again, out) and not torch.equal(other, out) and not torch.equal(plain, out)


def test_horizontal_flip_only_when_asked():
    frames = torch.zeros(1, 32, 32, 3, dtype=torch.uint8)
    frames[0, :, :16] = 255  # left half white
    mask = torch.tensor([True])
    never = ClipTransform(image_size=32, augment=True, crop_scale=(1.0, 1.0), brightness=0.0)
    always_asked = ClipTransform(image_size=32, augment=True, crop_scale=(1.0, 1.0), brightness=0.0, hflip=True)
    flips = 0
    for seed in range(20):
        kept = never(frames, mask, torch.Generator().manual_seed(seed))
        assert kept[0, 0, :, 0].mean() > kept[0, 0, :, -1].mean()
        maybe = always_asked(frames, mask, torch.Generator().manual_seed(seed))
        flips += int(maybe[0, 0, :, 0].mean() < maybe[0, 0, :, -1].mean())
    assert 0 < flips < 20
