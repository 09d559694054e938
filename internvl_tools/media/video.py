"""Video frames for InternVL: the reference frame sampling and one 448×448 tile per frame.

Frame indices follow the model card's ``get_index`` exactly (docs/internvl_reference.md §3, §7): the clip
``[start, end]`` seconds (default: the whole video) is cut into ``num_segments`` equal segments and the middle
frame of each is taken. Frames are decoded with decord when it is installed, else with PyAV.

>>> sample_frame_indices(300, 30.0, 8)
[18, 55, 93, 130, 168, 205, 242, 280]
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

from internvl_tools.constants import DEFAULT_IMAGE_SIZE, IMAGENET_MEAN, IMAGENET_STD
from internvl_tools.errors import ConfigError, DependencyMissingError, VideoError
from internvl_tools.media.paths import resolve_local_path

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from PIL import Image

    from internvl_tools.media.policy import MediaPolicy

__all__ = ["VideoFrames", "load_video", "sample_frame_indices"]

VideoSource = str | os.PathLike | bytes | BinaryIO


def sample_frame_indices(
    num_frames: int, fps: float, num_segments: int, bound: Sequence[float] | None = None
) -> list[int]:
    """Indices of the frames the InternVL reference samples from a video of ``num_frames`` frames.

    ``bound`` is ``(start_s, end_s)`` in seconds; ``None`` means the whole video. Indices may repeat when the
    video has fewer frames than segments, as in the reference.

    >>> sample_frame_indices(32, 30.0, 8)
    [1, 5, 9, 13, 17, 20, 24, 28]
    >>> sample_frame_indices(300, 30.0, 4, bound=(2.0, 4.0))
    [67, 82, 97, 112]
    """
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise VideoError(f"the video has no frames (num_frames={num_frames!r}); check that the file is a video.")
    if isinstance(num_segments, bool) or not isinstance(num_segments, int) or num_segments < 1:
        raise ConfigError(f"num_segments must be a positive int, got {num_segments!r}.")
    if not isinstance(fps, (int, float)) or isinstance(fps, bool) or not math.isfinite(fps) or fps <= 0:
        raise VideoError(f"the video frame rate must be a positive number, got {fps!r}.")
    if bound:
        if len(bound) != 2:
            raise VideoError(f"bound must be (start_seconds, end_seconds), got {bound!r}.")
        start, end = float(bound[0]), float(bound[1])
        if not (math.isfinite(start) and math.isfinite(end)) or start > end:
            raise VideoError(f"bound {tuple(bound)!r} is not a time range: start must be <= end, both finite.")
    else:
        start, end = -100000, 100000
    max_frame = num_frames - 1
    # The reference's arithmetic, op for op: Python round() (half to even), float segment size, np.round.
    start_idx = max(0, round(start * fps))
    end_idx = min(round(end * fps), max_frame)
    if start_idx > end_idx:
        raise VideoError(
            f"bound {tuple(bound)!r} starts at frame {start_idx}, after the last frame {max_frame} "
            f"({num_frames} frames at {fps:g} fps = {num_frames / fps:.2f} s); use a start inside the video."
        )
    seg_size = float(end_idx - start_idx) / num_segments
    return [int(start_idx + (seg_size / 2) + _np_round(seg_size * idx)) for idx in range(num_segments)]


def _np_round(x: float) -> float:
    # np.round(x) for a scalar: round half to even, returned as a float.
    return float(round(x))


@dataclass
class VideoFrames:
    """Sampled frames of a video and their tiles (one per frame), ready for ``Frame{i}: <image>`` prompts."""

    frames: list[Image.Image]
    indices: list[int]
    fps: float
    num_frames: int
    pixel_values: torch.Tensor
    backend: str
    num_patches_list: list[int] = field(default_factory=list)

    @property
    def timestamps(self) -> list[float]:
        """Seconds of each sampled frame (``index / fps``)."""
        return [i / self.fps for i in self.indices]

    @property
    def duration(self) -> float:
        """Length of the video in seconds (``num_frames / fps``)."""
        return self.num_frames / self.fps


def load_video(
    source: VideoSource,
    num_segments: int = 8,
    bound: Sequence[float] | None = None,
    image_size: int = DEFAULT_IMAGE_SIZE,
    mode: str = "fast",
    *,
    dtype: Any = None,
    device: Any = None,
    backend: str | None = None,
    num_threads: int | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    policy: MediaPolicy | None = None,
) -> VideoFrames:
    """Decode the reference's ``num_segments`` frames of a video and tile each into one ``S×S`` tile.

    ``source`` is a path, raw bytes or a binary file object. ``backend`` forces ``"decord"`` or ``"pyav"``;
    by default decord is used when installed, else PyAV. ``mode``/``dtype``/``device``/``mean``/``std`` are as in
    :func:`internvl_tools.tiling.tile_image` (pass the checkpoint's normalisation). ``policy`` (a
    :class:`~internvl_tools.media.policy.MediaPolicy`) applies to videos as to images: paths must lie in its
    ``allowed_dirs`` (relative ones are taken from the first), local files can be switched off, and inline bytes are
    capped at ``max_bytes``.

    >>> vf = load_video("clip.mp4", num_segments=8)  # doctest: +SKIP
    >>> vf.pixel_values.shape, vf.num_patches_list  # doctest: +SKIP
    (torch.Size([8, 3, 448, 448]), [1, 1, 1, 1, 1, 1, 1, 1])
    """
    import torch

    from internvl_tools.tiling import tile_image

    if isinstance(num_segments, bool) or not isinstance(num_segments, int) or num_segments < 1:
        raise ConfigError(f"num_segments must be a positive int, got {num_segments!r}.")
    if policy is not None:
        source = _apply_policy(source, policy)
    chosen = backend or ("decord" if _has_decord() else "pyav")
    if chosen == "decord":
        frames, indices, fps, n = _decode_decord(source, num_segments, bound)
    elif chosen == "pyav":
        frames, indices, fps, n = _decode_pyav(source, num_segments, bound)
    else:
        raise ConfigError(f"backend must be 'decord' or 'pyav', got {backend!r}.")
    tiles = [
        tile_image(f, max_tiles=1, image_size=image_size, mode=mode, dtype=dtype, device=device, mean=mean, std=std,
                   num_threads=num_threads).pixel_values
        for f in frames
    ]  # fmt: skip
    return VideoFrames(
        frames=frames,
        indices=indices,
        fps=fps,
        num_frames=n,
        pixel_values=torch.cat(tiles),
        backend=chosen,
        num_patches_list=[1] * len(frames),
    )


def _apply_policy(source: VideoSource, policy: MediaPolicy) -> VideoSource:
    """The source as the policy allows it: a confined, resolved path, or bytes within the size cap."""
    if isinstance(source, (str, os.PathLike)):
        return resolve_local_path(os.fspath(source), policy)
    if isinstance(source, (bytes, bytearray, memoryview)) and len(source) > policy.max_bytes:
        raise VideoError(
            f"the video bytes ({len(source):,} B) exceed MediaPolicy.max_bytes ({policy.max_bytes:,} B); pass a "
            "smaller clip or raise the limit."
        )
    return source


def _has_decord() -> bool:
    try:
        import decord  # noqa: F401
    except ImportError:
        return False
    return True


def _open_arg(source: VideoSource) -> Any:
    if isinstance(source, (bytes, bytearray, memoryview)):
        if not source:
            raise VideoError("the video bytes are empty.")
        return io.BytesIO(bytes(source))
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise VideoError(f"video file not found: {path!r}.")
        return path
    if hasattr(source, "read"):
        return source
    raise VideoError(f"cannot read a video from a {type(source).__name__}; pass a path, bytes or a binary file.")


def _decode_decord(source: VideoSource, num_segments: int, bound: Sequence[float] | None):
    from PIL import Image

    try:
        from decord import VideoReader, cpu
    except ImportError as exc:
        raise DependencyMissingError("decord is not installed; pip install 'internvl-tools[video]'.") from exc
    try:
        vr = VideoReader(_open_arg(source), ctx=cpu(0), num_threads=1)
        n = len(vr)
        fps = float(vr.get_avg_fps())
    except VideoError:
        raise
    except Exception as exc:  # decord raises its own DECORDError / RuntimeError
        raise VideoError(f"could not open the video with decord: {exc}") from exc
    indices = sample_frame_indices(n, fps, num_segments, bound)
    try:
        batch = vr.get_batch(indices).asnumpy()
    except Exception as exc:
        raise VideoError(f"could not decode frames {indices} with decord: {exc}") from exc
    return [Image.fromarray(f).convert("RGB") for f in batch], indices, fps, n


def _decode_pyav(source: VideoSource, num_segments: int, bound: Sequence[float] | None):
    try:
        import av
    except ImportError as exc:  # pragma: no cover - av is a core dependency of the video extra
        raise DependencyMissingError(
            "neither decord nor PyAV is installed; pip install 'internvl-tools[video]'."
        ) from exc
    arg = _open_arg(source)
    try:
        container = av.open(arg, mode="r")
    except Exception as exc:
        raise VideoError(f"could not open the video: {exc}") from exc
    with container:
        if not container.streams.video:
            raise VideoError("the file has no video stream.")
        stream = container.streams.video[0]
        # Frame table from the packets, as decord builds it: presentation timestamps in order, keyframe flags.
        table: list[tuple[int, bool]] = []
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue  # flush packet
                ts = packet.pts if packet.pts is not None else packet.dts
                table.append((ts if ts is not None else len(table), bool(packet.is_keyframe)))
        except Exception as exc:
            raise VideoError(f"could not read the video packets: {exc}") from exc
        if not table:
            raise VideoError("the video has no frames.")
        table.sort()
        fps = _stream_fps(stream, len(table))
        indices = sample_frame_indices(len(table), fps, num_segments, bound)
        frames = _pyav_frames_at(container, stream, table, indices)
    return frames, indices, fps, len(table)


def _stream_fps(stream: Any, n_frames: int) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return float(rate)
    if stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
        if seconds > 0:
            return n_frames / seconds
    raise VideoError("the video frame rate is unknown (no average, guessed or base rate in the stream).")


def _pyav_frames_at(container: Any, stream: Any, table: list[tuple[int, bool]], indices: list[int]):
    """Decode the frames at ``indices`` (frame numbers in presentation order), seeking between distant ones."""
    wanted = sorted(set(indices))
    pts_list = [pts for pts, _ in table]
    keyframes = [i for i, (_, key) in enumerate(table) if key] or [0]
    found: dict[int, Any] = {}
    decoder = None
    last_decoded = -1  # frame number of the last decoded frame in this decoder run
    position = {pts: i for i, pts in enumerate(pts_list)}
    try:
        for target in wanted:
            key = max((k for k in keyframes if k <= target), default=0)
            if target in found:
                continue
            # Seek when nothing is open yet, when the target lies behind us, or when a keyframe lies between
            # our position and the target (seeking there is cheaper than decoding through).
            if decoder is None or target <= last_decoded or key > last_decoded:
                container.seek(int(pts_list[key]), stream=stream, backward=True, any_frame=False)
                decoder = container.decode(stream)
                last_decoded = -1
            for frame in decoder:
                idx = position.get(frame.pts) if frame.pts is not None else None
                if idx is None:
                    idx = last_decoded + 1 if last_decoded >= 0 else key
                last_decoded = idx
                if idx in wanted and idx not in found:
                    found[idx] = frame.to_image()
                if idx >= target:
                    break
    except _av_errors() as exc:
        raise VideoError(f"could not decode the video frames: {exc}") from exc
    missing = [i for i in wanted if i not in found]
    if missing:
        raise VideoError(f"could not decode frames {missing} of {len(table)}; the video may be truncated.")
    return [found[i].convert("RGB") for i in indices]


def _av_errors() -> tuple[type[BaseException], ...]:
    import av

    return (av.error.FFmpegError, ValueError, RuntimeError)
