"""Hostile paths, on every surface that reads local files: one typed error that names the problem, never a hang.

The table below is the specification. Each row is a path an agent, a user or a corrupted manifest might hand us;
each surface must answer it with a :class:`~internvl_tools.MediaError` (an error ``ToolMessage`` for LangChain
tools) whose message says what is wrong, within a bounded time (a FIFO must never be opened for reading):

* the core: :func:`confine_path`, :func:`open_confined`, :func:`resolve_local_path` and :func:`load_image`;
* LangChain: each agent tool via ``invoke`` (``handle_tool_error=True``), and ``ChatInternVL`` image blocks;
* LlamaIndex: the LLM's document / video / image blocks, and ``InternVLPDFReader(allowed_dirs=...)``.

The allowed directories are ``[sandbox, /dev]``, so a bare ``zero`` names ``/dev/zero`` *inside* them: devices must
be refused for what they are, not only for where they live.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from internvl_tools import MediaPolicy, load_image
from internvl_tools.errors import MediaError, MediaNotFoundError, MediaPolicyError, PathNotAllowedError
from internvl_tools.media import confine_path, open_confined, resolve_local_path

pytestmark = pytest.mark.skipif(os.name != "posix", reason="symlinks, FIFOs and /dev are POSIX")

PNG_1x1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de0000000c4944415408d763f8cfc000000301010018dd"
    "8db00000000049454e44ae426082"
)
LIMIT_S = 10.0  # far above any honest answer; a FIFO opened for reading would block forever


@dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[Path, Path], str]  # (sandbox, outside) -> the reference as a caller writes it
    error: type[MediaError]  # what the core's confine_path raises
    needle: str  # ... and what its message says
    tool_needle: str  # what an agent tool's error ToolMessage says (agents may only give relative paths)


def _loop(sandbox: Path, outside: Path) -> str:
    (sandbox / "loop.png").symlink_to(sandbox / "loop.png")
    return "loop.png"


def _fifo(sandbox: Path, outside: Path) -> str:
    os.mkfifo(sandbox / "pipe.png")
    return "pipe.png"


def _directory(sandbox: Path, outside: Path) -> str:
    (sandbox / "folder.png").mkdir()
    return "folder.png"


def _escape(sandbox: Path, outside: Path) -> str:
    (sandbox / "escape.png").symlink_to(outside / "secret.png")
    return "escape.png"


CASES = [
    Case("symlink-loop", _loop, MediaNotFoundError, "symlink loop", "symlink loop"),
    Case("nul-byte", lambda s, o: "a\x00b.png", MediaNotFoundError, "NUL byte", "NUL byte"),
    Case("5000-char-name", lambda s, o: "x" * 5000 + ".png", MediaNotFoundError, "too long", "too long"),
    Case("300-char-component", lambda s, o: "y" * 300 + ".png", MediaNotFoundError, "too long", "too long"),
    Case("fifo", _fifo, MediaNotFoundError, "named pipe (FIFO)", "named pipe (FIFO)"),
    Case("directory", _directory, MediaNotFoundError, "is a directory", "is a directory"),
    Case("dev-zero", lambda s, o: "zero", MediaNotFoundError, "device file", "device file"),
    Case("symlink-escape", _escape, PathNotAllowedError, "outside the allowed", "outside the allowed folder"),
    Case("dot-dot", lambda s, o: "../secret.png", PathNotAllowedError, "outside the allowed", "'..'"),
    Case(
        "absolute-outside",
        lambda s, o: str(o / "secret.png"),
        PathNotAllowedError,
        "outside the allowed",
        "Absolute paths",
    ),
    Case(
        "non-utf8-name",
        lambda s, o: os.fsdecode(b"caf\xe9-missing.png"),
        MediaNotFoundError,
        "No such file",
        "No such file",
    ),
    Case(
        "unencodable",
        lambda s, o: "\ud800.png",
        MediaNotFoundError,
        "cannot be part of a file name",
        "cannot be part of a file name",
    ),
    Case(
        "windows-path", lambda s, o: "C:\\Users\\me\\secret.png", MediaNotFoundError, "Windows path", "Absolute paths"
    ),
    Case("unknown-user-home", lambda s, o: "~no-such-user-4711/x.png", MediaNotFoundError, "'~'", "Absolute paths"),
    Case("empty", lambda s, o: " ", MediaNotFoundError, "empty", "empty"),
]
IDS = [c.id for c in CASES]


def bounded(fn: Callable[[], Any], seconds: float = LIMIT_S) -> Any:
    """``fn()`` in a daemon thread: its result, or its exception re-raised; a clean failure if it hangs."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as err:  # handed back to the test thread
            box["error"] = err

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"still running after {seconds} s (blocked on a FIFO or device?)"
    if "error" in box:
        raise box["error"]
    return box.get("value")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(sandbox, outside): a readable image in each; unblocks any reader left on a FIFO when the test ends."""
    sandbox, outside = tmp_path / "sandbox", tmp_path
    sandbox.mkdir()
    (sandbox / "ok.png").write_bytes(PNG_1x1)
    (outside / "secret.png").write_bytes(PNG_1x1)
    yield sandbox, outside
    for fifo in sandbox.glob("pipe*"):
        with contextlib.suppress(OSError):  # a reader stuck in open() would wait forever; a writer lets it go
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def dirs(sandbox: Path) -> list[str]:
    return [str(sandbox), "/dev"]


# --- the core ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_confine_path_turns_every_path_problem_into_a_typed_error(case: Case, world: tuple[Path, Path]) -> None:
    sandbox, outside = world
    ref = case.make(sandbox, outside)
    with pytest.raises(case.error, match=None) as info:
        bounded(lambda: confine_path(ref, dirs(sandbox)))
    assert case.needle in str(info.value)
    assert isinstance(info.value, MediaError)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_agent_mode_refuses_every_hostile_reference(case: Case, world: tuple[Path, Path]) -> None:
    sandbox, outside = world
    ref = case.make(sandbox, outside)
    with pytest.raises(MediaError) as info:
        bounded(lambda: confine_path(ref, dirs(sandbox), relative=True))
    assert case.tool_needle in str(info.value)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_open_confined_refuses_before_reading(case: Case, world: tuple[Path, Path]) -> None:
    sandbox, outside = world
    ref = case.make(sandbox, outside)
    with pytest.raises(case.error) as info:
        bounded(lambda: open_confined(ref, dirs(sandbox)))
    assert case.needle in str(info.value)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_load_image_answers_every_hostile_path_with_a_media_error(case: Case, world: tuple[Path, Path]) -> None:
    sandbox, outside = world
    ref = case.make(sandbox, outside)
    policy = MediaPolicy.sandboxed(dirs(sandbox))
    with pytest.raises(MediaError):
        bounded(lambda: load_image(ref, policy=policy))


def test_good_paths_still_work(world: tuple[Path, Path]) -> None:
    sandbox, _ = world
    (sandbox / os.fsdecode(b"caf\xe9.png")).write_bytes(PNG_1x1)  # a real non-UTF-8 name
    assert confine_path("ok.png", dirs(sandbox)) == sandbox.resolve() / "ok.png"
    assert confine_path(b"caf\xe9.png", dirs(sandbox)).name == os.fsdecode(b"caf\xe9.png")
    assert confine_path(os.fsdecode(b"caf\xe9.png"), dirs(sandbox), relative=True).is_file()
    assert confine_path(sandbox / "ok.png") == sandbox / "ok.png"  # no confinement: the path as given
    with open_confined("ok.png", dirs(sandbox), relative=True) as handle:
        assert handle.read() == PNG_1x1
        assert handle.name == str(sandbox.resolve() / "ok.png")
    assert load_image("ok.png", policy=MediaPolicy.sandboxed(dirs(sandbox))).size == (1, 1)


def test_devices_and_fifos_are_refused_without_any_confinement(world: tuple[Path, Path]) -> None:
    sandbox, _ = world
    os.mkfifo(sandbox / "pipe-free.png")
    for path, needle in [("/dev/zero", "device file"), (str(sandbox / "pipe-free.png"), "named pipe")]:
        with pytest.raises(MediaNotFoundError, match=needle):
            bounded(lambda p=path: confine_path(p))
        with pytest.raises(MediaNotFoundError, match=f"{needle}|not a regular file"):
            bounded(lambda p=path: load_image(p))


def test_size_cap_is_checked_before_reading(world: tuple[Path, Path]) -> None:
    sandbox, _ = world
    with pytest.raises(MediaPolicyError, match="over the 10-byte limit"):
        confine_path("ok.png", dirs(sandbox), max_bytes=10)


def test_resolve_local_path_checks_names_but_not_existence(world: tuple[Path, Path]) -> None:
    sandbox, outside = world
    policy = MediaPolicy.sandboxed(dirs(sandbox))
    assert resolve_local_path("later.png", policy) == sandbox.resolve() / "later.png"  # may not exist yet
    with pytest.raises(MediaNotFoundError, match="symlink loop"):
        resolve_local_path(_loop(sandbox, outside), policy)
    with pytest.raises(PathNotAllowedError, match="outside the allowed"):
        resolve_local_path("../secret.png", policy)
    with pytest.raises(PathNotAllowedError, match="disabled"):
        resolve_local_path("ok.png", MediaPolicy(allow_local_files=False))


def test_a_file_swapped_after_the_check_is_not_read(world: tuple[Path, Path], monkeypatch) -> None:
    """TOCTOU: the name is checked, then an attacker swaps in a link to a secret before the open."""
    from internvl_tools.media import paths  # open_confined looks confine_path up in its own module

    sandbox, outside = world
    target = sandbox / "swap.png"
    target.write_bytes(PNG_1x1)
    real_confine = paths.confine_path

    def confine_then_swap(*args: Any, **kwargs: Any) -> Path:
        checked = real_confine(*args, **kwargs)
        target.unlink()
        target.symlink_to(outside / "secret.png")
        return checked

    monkeypatch.setattr(paths, "confine_path", confine_then_swap)
    with pytest.raises(PathNotAllowedError, match="changed while it was being opened"):
        paths.open_confined("swap.png", dirs(sandbox))


def test_unreadable_file_names_the_permission_problem(world: tuple[Path, Path]) -> None:
    sandbox, _ = world
    locked = sandbox / "locked"
    locked.mkdir()
    (locked / "a.png").write_bytes(PNG_1x1)
    locked.chmod(0)
    try:
        try:
            os.stat(locked / "a.png")
        except PermissionError:
            pass
        else:
            pytest.skip("running with privileges that ignore permissions (root)")
        with pytest.raises(MediaNotFoundError, match="permission denied"):
            confine_path("locked/a.png", dirs(sandbox))
    finally:
        locked.chmod(0o700)


def test_an_over_long_folder_name_anywhere_in_the_path_is_explained(world: tuple[Path, Path]) -> None:
    sandbox, _ = world
    with pytest.raises(MediaNotFoundError, match="too long"):
        confine_path("d" * 300 + "/a.png", dirs(sandbox))
    with pytest.raises(MediaNotFoundError, match="too long"):
        confine_path(str(sandbox / ("d" * 300) / "a.png"))  # unconfined too


# --- LangChain -----------------------------------------------------------------------------------------------------


def _langchain_tools() -> list[type]:
    lc = pytest.importorskip("langchain_internvl")
    return [lc.InternVLVisionTool, lc.InternVLGroundingTool, lc.InternVLOCRTool]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_langchain_tools_return_an_error_tool_message(case: Case, world: tuple[Path, Path]) -> None:
    from langchain_core.messages import ToolMessage

    sandbox, outside = world
    ref = case.make(sandbox, outside).strip() or " "
    for tool_cls in _langchain_tools():
        tool = tool_cls(model="does/not-exist", allowed_dirs=dirs(sandbox))
        args = {
            k: v
            for k, v in {"image": ref, "question": "q", "phrase": "p"}.items()
            if k in tool.args_schema.model_fields
        }
        call = {"name": tool.name, "args": args, "id": "call-1", "type": "tool_call"}
        message = bounded(lambda t=tool, c=call: t.invoke(c))
        assert isinstance(message, ToolMessage), message
        assert message.status == "error"
        assert case.tool_needle in message.content, message.content
        assert tool._engines == {}  # refused before any model work


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_chat_internvl_image_blocks_with_local_paths(case: Case, world: tuple[Path, Path]) -> None:
    lc = pytest.importorskip("langchain_internvl")
    from langchain_core.messages import HumanMessage

    sandbox, outside = world
    ref = case.make(sandbox, outside)
    if not ref.strip():
        pytest.skip("an empty url is not an image block")
    chat = lc.ChatInternVL(model="does/not-exist", allowed_dirs=dirs(sandbox))
    message = HumanMessage([{"type": "image", "url": ref}, "What is this?"])
    with pytest.raises(MediaError):
        bounded(lambda: chat.invoke([message]))


# --- LlamaIndex ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_llama_index_document_and_video_blocks(case: Case, world: tuple[Path, Path]) -> None:
    pytest.importorskip("llama_index.llms.internvl")
    from llama_index.core.base.llms.types import ChatMessage, DocumentBlock, VideoBlock
    from llama_index.llms.internvl.blocks import to_core_messages

    sandbox, outside = world
    ref = case.make(sandbox, outside)
    policy = MediaPolicy.sandboxed(dirs(sandbox))
    blocks = [
        # Built without validation: LlamaIndex's own FilePath check raises a bare OSError for over-long names, and a
        # block built from a good file may meet a different one later.
        DocumentBlock.model_construct(path=ref, document_mimetype="application/pdf"),
        VideoBlock.model_construct(path=Path(ref)),
    ]
    for block in blocks:
        message = ChatMessage(role="user", blocks=[block])
        with pytest.raises(case.error) as info:
            bounded(lambda m=message: to_core_messages([m], media_policy=policy))
        assert case.needle in str(info.value)


def test_llama_index_blocks_without_a_policy_still_refuse_fifos_and_devices(world: tuple[Path, Path]) -> None:
    pytest.importorskip("llama_index.llms.internvl")
    from llama_index.core.base.llms.types import ChatMessage, DocumentBlock
    from llama_index.llms.internvl.blocks import to_core_messages

    sandbox, _ = world
    os.mkfifo(sandbox / "pipe-doc.pdf")
    for path, needle in [(str(sandbox / "pipe-doc.pdf"), "named pipe"), ("/dev/zero", "device file")]:
        message = ChatMessage(role="user", blocks=[DocumentBlock(path=path, document_mimetype="text/plain")])
        with pytest.raises(MediaNotFoundError, match=needle):
            bounded(lambda m=message: to_core_messages([m], media_policy=None))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_llama_index_reader_with_allowed_dirs(case: Case, world: tuple[Path, Path]) -> None:
    readers = pytest.importorskip("llama_index.readers.internvl")
    sandbox, outside = world
    ref = case.make(sandbox, outside)
    reader = readers.InternVLPDFReader(model="does/not-exist", allowed_dirs=dirs(sandbox))
    with pytest.raises(case.error) as info:
        bounded(lambda: reader.load_data(ref))
    assert case.needle in str(info.value)
    assert reader._engine is None  # refused before any model work


def test_llama_index_reader_confinement_is_off_by_default(world: tuple[Path, Path]) -> None:
    readers = pytest.importorskip("llama_index.readers.internvl")
    sandbox, outside = world
    reader = readers.InternVLPDFReader(model="does/not-exist")
    assert reader.allowed_dirs is None
    source, name = reader._source(str(outside / "secret.png"), None)  # any path may be read ...
    assert source == str(outside / "secret.png") and name == source
    os.mkfifo(sandbox / "pipe-reader.pdf")
    with pytest.raises(MediaNotFoundError, match="named pipe"):  # ... but never a FIFO
        bounded(lambda: reader.load_data(str(sandbox / "pipe-reader.pdf")))
    confined = readers.InternVLPDFReader(model="does/not-exist", allowed_dirs=[str(sandbox)])
    with pytest.raises(PathNotAllowedError):
        confined.load_data(str(outside / "secret.png"))
