"""Video decoding (decord) and the frame transform that feeds the image encoder.

Sampling follows the paper: decode at ``sample_fps`` (1 frame per second), then keep ``num_frames``
of those, spread uniformly; a shorter video keeps all its sampled frames and is zero-padded at the
end, with a mask telling real frames (True) from padding (False).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from decord import VideoReader, cpu
from decord._ffi.base import DECORDError

from glscl.model.backbone import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD


class VideoError(RuntimeError):
    """A video that cannot be read; the message is one line naming the file and the reason."""


def sample_frame_indices(num_native_frames: int, native_fps: float, num_frames: int,
                         sample_fps: float = 1.0) -> tuple[np.ndarray, int]:
    """Indices of the frames to decode, and how many there are (at most num_frames).

    Step 1, one frame per 1/sample_fps seconds: candidates c_j = round(j * native_fps / sample_fps)
    for j = 0, 1, ... while below num_native_frames (never more often than the native frames).
    Step 2, if there are more than num_frames candidates, keep c at positions
    round(linspace(0, len(c) - 1, num_frames)); otherwise keep them all (the caller zero-pads).
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if not native_fps > 0 or not sample_fps > 0:
        raise ValueError(f"frame rates must be > 0, got native_fps={native_fps}, sample_fps={sample_fps}")
    step = max(native_fps / sample_fps, 1.0)
    candidates = np.round(np.arange(0, num_native_frames, step))
    candidates = np.minimum(candidates, num_native_frames - 1).astype(np.int64)
    if len(candidates) > num_frames:
        keep = np.round(np.linspace(0, len(candidates) - 1, num_frames)).astype(np.int64)
        candidates = candidates[keep]
    return candidates, len(candidates)


def _open(path: Path, size: int | None = None) -> tuple[VideoReader, int, float]:
    """(reader, native frames, native fps) of a video file; ``VideoError`` naming the file otherwise."""
    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: cannot be opened as a video: empty file (0 bytes)")
    try:
        resize = {"width": size, "height": size} if size else {}
        reader = VideoReader(str(path), ctx=cpu(0), num_threads=1, **resize)
        num_native_frames, native_fps = len(reader), reader.get_avg_fps()
    except (DECORDError, RuntimeError):
        raise VideoError(f"{path}: cannot be opened as a video (corrupt, truncated or not a video file)") from None
    if num_native_frames == 0:
        raise VideoError(f"{path}: the video has no frames")
    if not (math.isfinite(native_fps) and native_fps > 0):
        raise VideoError(f"{path}: invalid frame rate {native_fps}")
    return reader, num_native_frames, native_fps


def probe_video(path: str | os.PathLike) -> tuple[int, float]:
    """(native frames, native fps) of a video whose first frame decodes: the cheap check run before
    training and by ``glscl data check``. Raises ``VideoError`` like ``load_clip``."""
    path = Path(path)
    reader, num_native_frames, native_fps = _open(path)
    try:
        reader.get_batch([0])
    except (DECORDError, RuntimeError):
        raise VideoError(f"{path}: decoding failed (corrupt or truncated video)") from None
    return num_native_frames, native_fps


def load_clip(path: str | os.PathLike, num_frames: int, sample_fps: float = 1.0,
              size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Decodes a video into (frames, mask): frames (num_frames, H, W, 3) uint8, zero after the
    real frames; mask (num_frames,) bool, True for real frames. size: decode at size x size
    (decord's own scaler); None keeps the native size. Raises VideoError for a missing, corrupt,
    truncated or empty video.
    """
    path = Path(path)
    reader, num_native_frames, native_fps = _open(path, size)
    indices, num_valid = sample_frame_indices(num_native_frames, native_fps, num_frames, sample_fps)
    try:
        decoded = torch.from_numpy(reader.get_batch(indices.tolist()).asnumpy())
    except (DECORDError, RuntimeError):
        raise VideoError(f"{path}: decoding failed (corrupt or truncated video)") from None
    frames = torch.zeros((num_frames, *decoded.shape[1:]), dtype=torch.uint8)
    frames[:num_valid] = decoded
    mask = torch.arange(num_frames) < num_valid
    return frames, mask


@dataclass(frozen=True)
class ClipTransform:
    """uint8 frames (T, H, W, 3) -> float (T, 3, S, S), normalised (x / 255 - mean) / std.

    Without augmentation the frame's centred square (side min(H, W)) is resized to S x S (bilinear,
    antialiased): CLIP's resize-then-centre-crop. With ``augment`` one random draw per clip, shared
    by all its frames: a crop of area share in ``crop_scale`` and aspect ratio in [3/4, 4/3] (each
    side clamped to the frame), then brightness x factor in [1 - brightness, 1 + brightness], then
    a horizontal flip with probability 1/2 if ``hflip``. Flips are off by default because they swap
    "left" and "right"; there is no colour jitter because colour is what captions name.
    Padded frames (mask False) come out exactly zero.
    """

    image_size: int
    mean: tuple[float, float, float] = OPENAI_DATASET_MEAN
    std: tuple[float, float, float] = OPENAI_DATASET_STD
    augment: bool = False
    crop_scale: tuple[float, float] = (0.8, 1.0)
    brightness: float = 0.1
    hflip: bool = False

    @classmethod
    def for_backbone(cls, backbone, **options) -> ClipTransform:
        """The transform a backbone's image encoder expects (its input size and normalisation);
        ``options``: the augmentation fields."""
        cfg = backbone.preprocess_cfg
        return cls(backbone.image_size, tuple(cfg["mean"]), tuple(cfg["std"]), **options)

    def __call__(self, frames: torch.Tensor, mask: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        num_frames, height, width, _ = frames.shape
        out = torch.zeros((num_frames, 3, self.image_size, self.image_size))
        if not mask.any():
            return out
        top, left, crop_h, crop_w = self._crop_box(height, width, generator)
        x = frames[mask, top:top + crop_h, left:left + crop_w].permute(0, 3, 1, 2).float() / 255.0
        side = self.image_size
        x = F.interpolate(x, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
        if self.augment:
            factor = 1.0 + self.brightness * (2.0 * _uniform(generator) - 1.0)
            x = (x * factor).clamp(0.0, 1.0)
            if self.hflip and _uniform(generator) < 0.5:
                x = x.flip(-1)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        out[mask] = (x - mean) / std
        return out

    def _crop_box(self, height: int, width: int, generator: torch.Generator | None) -> tuple[int, int, int, int]:
        """(top, left, height, width) of the region to resize."""
        if not self.augment:
            side = min(height, width)
            return (height - side) // 2, (width - side) // 2, side, side
        low, high = self.crop_scale
        area = height * width * (low + (high - low) * _uniform(generator))
        aspect = math.exp(math.log(3 / 4) + math.log(16 / 9) * _uniform(generator))  # log-uniform in [3/4, 4/3]
        crop_w = min(width, max(1, round(math.sqrt(area * aspect))))
        crop_h = min(height, max(1, round(math.sqrt(area / aspect))))
        top = int((height - crop_h + 1) * _uniform(generator))
        left = int((width - crop_w + 1) * _uniform(generator))
        return top, left, crop_h, crop_w


def _uniform(generator: torch.Generator | None) -> float:
    """One draw from U[0, 1)."""
    return float(torch.rand((), generator=generator))
