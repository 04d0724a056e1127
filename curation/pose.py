"""Pose: MediaPipe Pose over a video, streamed frame by frame, into a PoseTrack saved as .npz."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class PoseTrack:
    """Landmarks of one video.

    landmarks: float32 (T, 33, 4) = x, y (normalised image coords), z, visibility; NaN where no person
    (or a frame masked for low visibility and not interpolated).
    timestamps: float64 (T,) seconds of each frame.
    detected: bool (T,) whether MediaPipe found a person in that frame (before masking / interpolation).
    motion: float32 (T,) mean absolute grey-level difference to the previous frame (0..1), computed in the
    same pass; the frame-differencing signal the trim stage uses beside pose motion. motion[0] = 0.
    """

    landmarks: np.ndarray
    timestamps: np.ndarray
    detected: np.ndarray
    motion: np.ndarray
    fps: float
    width: int
    height: int

    @property
    def frames(self) -> int:
        return int(self.landmarks.shape[0])

    @property
    def person_share(self) -> float:
        """Share of frames in which a person was detected."""
        return float(self.detected.mean()) if self.frames else 0.0


def save_track(track: PoseTrack, path: Path) -> None:
    """Write a track to .npz atomically (temp file then rename) so a killed worker leaves no half file."""
    path = Path(path)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(
        tmp,
        landmarks=track.landmarks.astype(np.float32),
        timestamps=track.timestamps.astype(np.float64),
        detected=track.detected.astype(bool),
        motion=track.motion.astype(np.float32),
        fps=np.float64(track.fps),
        width=np.int64(track.width),
        height=np.int64(track.height),
    )
    tmp.replace(path)


def load_track(path: Path) -> PoseTrack:
    """Read a track written by save_track."""
    with np.load(Path(path)) as d:
        return PoseTrack(
            landmarks=d["landmarks"],
            timestamps=d["timestamps"],
            detected=d["detected"],
            motion=d["motion"],
            fps=float(d["fps"]),
            width=int(d["width"]),
            height=int(d["height"]),
        )
