"""Specification of internvl_tools.media.video: the reference frame sampling and decoding the right frames."""

from __future__ import annotations

import io
import sys
import types

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from internvl_tools.errors import ConfigError, VideoError
from internvl_tools.media.video import load_video, sample_frame_indices


def ref_get_index(bound, fps, max_frame, first_idx=0, num_segments=32):
    """The model card's ``get_index``, restated."""
    if bound:
        start, end = bound[0], bound[1]
    else:
        start, end = -100000, 100000
    start_idx = max(first_idx, round(start * fps))
    end_idx = min(round(end * fps), max_frame)
    seg_size = float(end_idx - start_idx) / num_segments
    frame_indices = np.array(
        [int(start_idx + (seg_size / 2) + np.round(seg_size * idx)) for idx in range(num_segments)]
    )
    return frame_indices


# research/internvl_reference.md §7 (seed get_index at fps 30).
@pytest.mark.parametrize(
    ("num_frames", "num_segments", "expected"),
    [
        (300, 8, [18, 55, 93, 130, 168, 205, 242, 280]),
        (32, 8, [1, 5, 9, 13, 17, 20, 24, 28]),
        (9, 8, [0, 1, 2, 3, 4, 5, 6, 7]),
    ],
)
def test_section7_vectors(num_frames, num_segments, expected):
    assert sample_frame_indices(num_frames, 30.0, num_segments) == expected


@settings(max_examples=400, deadline=None)
@given(
    num_frames=st.integers(1, 20000),
    fps=st.sampled_from([1.0, 7.5, 23.976023976023978, 24.0, 25.0, 29.97002997002997, 30.0, 59.94, 60.0, 120.0]),
    num_segments=st.integers(1, 64),
    data=st.data(),
)
def test_matches_reference_get_index(num_frames, fps, num_segments, data):
    duration = num_frames / fps
    bound = data.draw(
        st.one_of(
            st.none(),
            st.tuples(st.floats(-5, duration * 0.9), st.floats(0, duration * 1.5)).filter(
                lambda b: b[0] <= b[1] and round(max(0, round(b[0] * fps))) <= num_frames - 1
            ),
        )
    )
    expected = ref_get_index(bound, fps, num_frames - 1, num_segments=num_segments).tolist()
    got = sample_frame_indices(num_frames, fps, num_segments, bound)
    assert got == expected
    assert all(0 <= i <= num_frames - 1 for i in got)
    assert got == sorted(got)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((0, 30.0, 8), VideoError),
        ((100, 0.0, 8), VideoError),
        ((100, float("nan"), 8), VideoError),
        ((100, 30.0, 0), ConfigError),
        ((100, 30.0, 8, (5.0, 2.0)), VideoError),
        ((100, 30.0, 8, (10.0, 20.0)), VideoError),  # starts after the 3.3 s video ends
        ((100, 30.0, 8, (1.0,)), VideoError),
    ],
)
def test_rejects_bad_arguments(args, error):
    with pytest.raises(error):
        sample_frame_indices(*args)


# --- decoding ---------------------------------------------------------------------------------------------------

N_FRAMES, FPS, W, H = 40, 10, 64, 48


def frame_colour(i: int) -> tuple[int, int, int]:
    # Distinct, well-separated flat colours that survive yuv420 compression.
    return ((i * 6) % 256, 255 - (i * 6) % 256, 40 + (i * 37) % 180)


def frame_number(img) -> int:
    r, g, b = np.asarray(img.convert("RGB"), dtype=np.float64)[8:-8, 8:-8].mean((0, 1))
    return min(
        range(N_FRAMES), key=lambda i: sum((x - y) ** 2 for x, y in zip((r, g, b), frame_colour(i), strict=True))
    )


@pytest.fixture(scope="module")
def video_path(tmp_path_factory):
    import av

    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("mpeg4", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.gop_size = 7  # several keyframes, so seeking is exercised
        stream.options = {"qscale": "2"}
        for i in range(N_FRAMES):
            arr = np.empty((H, W, 3), np.uint8)
            arr[:] = frame_colour(i)
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.mark.parametrize(
    ("num_segments", "bound"),
    [(8, None), (4, None), (40, None), (64, None), (5, (1.0, 2.5)), (3, (3.5, 100.0)), (1, None), (6, (0.0, 0.0))],
)
def test_decodes_the_reference_frames(video_path, num_segments, bound):
    vf = load_video(video_path, num_segments=num_segments, bound=bound, image_size=28)
    expected = ref_get_index(bound, FPS, N_FRAMES - 1, num_segments=num_segments).tolist()
    assert vf.indices == expected
    assert [frame_number(f) for f in vf.frames] == expected
    assert vf.num_frames == N_FRAMES and vf.fps == pytest.approx(FPS)
    assert vf.backend == "pyav"
    assert vf.num_patches_list == [1] * num_segments
    assert tuple(vf.pixel_values.shape) == (num_segments, 3, 28, 28)
    assert vf.timestamps == [i / FPS for i in expected]


def test_pixel_values_are_one_tile_per_frame(video_path):
    from internvl_tools.tiling import tile_image

    vf = load_video(video_path, num_segments=3, mode="exact", image_size=56)
    for k, frame in enumerate(vf.frames):
        assert torch.equal(
            vf.pixel_values[k], tile_image(frame, max_tiles=1, image_size=56, mode="exact").pixel_values[0]
        )
    assert (
        load_video(video_path, num_segments=2, image_size=56, dtype=torch.bfloat16).pixel_values.dtype == torch.bfloat16
    )


def test_bytes_and_file_objects(video_path):
    data = video_path.read_bytes()
    assert (
        load_video(data, num_segments=4, image_size=28).indices
        == load_video(video_path, num_segments=4, image_size=28).indices
    )
    vf = load_video(io.BytesIO(data), num_segments=4, image_size=28)
    assert [frame_number(f) for f in vf.frames] == vf.indices


@pytest.mark.parametrize(
    ("source", "kwargs", "error"),
    [
        (b"", {}, VideoError),
        (b"this is not a video", {}, VideoError),
        ("/nonexistent/clip.mp4", {}, VideoError),
        (12345, {}, VideoError),
    ],
)
def test_unreadable_sources(source, kwargs, error):
    with pytest.raises(error):
        load_video(source, **kwargs)


def test_bad_options(video_path):
    with pytest.raises(VideoError):
        load_video(video_path, bound=(60.0, 70.0))
    with pytest.raises(ConfigError):
        load_video(video_path, num_segments=0)
    with pytest.raises(ConfigError):
        load_video(video_path, backend="opencv")


# --- through the engine --------------------------------------------------------------------------------------------


def test_engine_answers_about_a_video_with_one_tile_per_frame(video_path, tiny_engine):
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "video", "video": str(video_path), "num_frames": 4},
                {"type": "text", "text": "What happens?"},
            ],
        }
    ]
    result = tiny_engine.chat(messages, max_new_tokens=3)
    assert result.error is None and isinstance(result.text, str)
    info = tiny_engine.info
    assert result.usage.num_tiles == 4
    assert result.usage.image_tokens == 4 * info.tokens_per_tile


def test_engine_media_policy_confines_video_paths(video_path, tiny_native, tmp_path):
    from internvl_tools import InternVL
    from internvl_tools.errors import PathNotAllowedError
    from internvl_tools.media import MediaPolicy

    sandboxed = InternVL.from_pretrained(str(tiny_native), media_policy=MediaPolicy.sandboxed([tmp_path]))
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "video", "video": str(video_path), "num_frames": 2},
                {"type": "text", "text": "What happens?"},
            ],
        }
    ]
    with pytest.raises(PathNotAllowedError, match="outside the allowed directories"):
        sandboxed.chat(messages, max_new_tokens=2)
    (tmp_path / "clip.mp4").write_bytes(video_path.read_bytes())
    inside = [
        {
            "role": "user",
            "content": [
                {"type": "video", "video": "clip.mp4", "num_frames": 2},
                {"type": "text", "text": "What happens?"},
            ],
        }
    ]
    assert sandboxed.chat(inside, max_new_tokens=2).usage.num_tiles == 2  # relative to the first allowed dir


def test_policy_caps_inline_video_bytes(video_path):
    from internvl_tools.media import MediaPolicy

    data = video_path.read_bytes()
    with pytest.raises(VideoError, match=r"exceed MediaPolicy\.max_bytes"):
        load_video(data, num_segments=2, image_size=28, policy=MediaPolicy(max_bytes=len(data) - 1))
    assert len(load_video(data, num_segments=2, image_size=28, policy=MediaPolicy(max_bytes=len(data))).frames) == 2


def test_mean_and_std_reach_the_pixels(video_path):
    plain = load_video(video_path, num_segments=1, image_size=28, mode="exact")
    other = load_video(video_path, num_segments=1, image_size=28, mode="exact", mean=(0.5,) * 3, std=(0.5,) * 3)
    assert not torch.equal(plain.pixel_values, other.pixel_values)


# --- the decord backend, through a stand-in module (decord has no wheel for this machine's Python) ---------------


class _FakeDecord:
    """The slice of decord's API that load_video uses: VideoReader(len, get_avg_fps, get_batch().asnumpy()), cpu."""

    def __init__(self, fail_open: bool = False) -> None:
        self.fail_open = fail_open
        self.opened: list[object] = []
        self.requested: list[list[int]] = []
        fake = self

        class VideoReader:
            def __init__(self, source, ctx=None, num_threads=0):
                if fake.fail_open:
                    raise RuntimeError("DECORDError: cannot find video stream")
                fake.opened.append(source)

            def __len__(self) -> int:
                return N_FRAMES

            def get_avg_fps(self) -> float:
                return float(FPS)

            def get_batch(self, indices):
                fake.requested.append(list(indices))
                frames = np.stack([np.full((H, W, 3), frame_colour(i), np.uint8) for i in indices])
                return types.SimpleNamespace(asnumpy=lambda: frames)

        self.VideoReader = VideoReader
        self.cpu = lambda n: ("cpu", n)


@pytest.mark.parametrize(("num_segments", "bound"), [(8, None), (5, (1.0, 2.5)), (1, None)])
def test_decord_backend_reads_the_reference_frames(video_path, monkeypatch, num_segments, bound):
    fake = _FakeDecord()
    monkeypatch.setitem(sys.modules, "decord", fake)
    vf = load_video(video_path, num_segments=num_segments, bound=bound, image_size=28)  # auto: decord when present
    expected = ref_get_index(bound, FPS, N_FRAMES - 1, num_segments=num_segments).tolist()
    assert vf.backend == "decord" and vf.indices == expected and fake.requested == [expected]
    assert [frame_number(f) for f in vf.frames] == expected
    assert fake.opened == [str(video_path)] and vf.fps == FPS and vf.num_frames == N_FRAMES
    # Same frames as the PyAV path on the real file.
    pyav = load_video(video_path, num_segments=num_segments, bound=bound, image_size=28, backend="pyav")
    assert pyav.indices == expected


def test_decord_backend_errors_are_typed(video_path, monkeypatch):
    from internvl_tools.errors import DependencyMissingError

    monkeypatch.setitem(sys.modules, "decord", _FakeDecord(fail_open=True))
    with pytest.raises(VideoError, match="could not open the video with decord"):
        load_video(video_path, backend="decord")
    monkeypatch.setitem(sys.modules, "decord", _FakeDecord())
    load_video(video_path.read_bytes(), num_segments=2, image_size=28, backend="decord")  # bytes go in as a stream
    assert isinstance(sys.modules["decord"].opened[0], io.BytesIO)
    monkeypatch.setitem(sys.modules, "decord", None)  # not installed
    with pytest.raises(DependencyMissingError, match="decord is not installed"):
        load_video(video_path, backend="decord")
    assert load_video(video_path, num_segments=2, image_size=28).backend == "pyav"  # auto falls back
