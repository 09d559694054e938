"""The render worker process: how it is started, bounded and spoken to.

The process backend of :func:`~internvl_tools.documents.render.render_pages` runs PDFium in a child started as
``python -c "...serve_worker()"`` (:func:`~.rasterize.serve_worker`). Unlike a ``multiprocessing`` spawn child it
never re-imports the caller's ``__main__``, so a plain script without an ``if __name__ == "__main__":`` guard works
as written. Parent and child speak a framed protocol over pipes (a JSON header, then raw bytes), never pickle, so
even a child compromised by a hostile PDF cannot make the parent run code, and every frame is size-checked before
it is read.

Each page is bounded in the child, by the kernel: an address-space limit (``RLIMIT_AS``, set to what the worker has
mapped after start-up plus ``memory_mb``) and a CPU-time timer per page (``ITIMER_PROF``, whose signal ends the
process). A page that breaches either kills the worker; the parent records that page as failed with a
:class:`~internvl_tools.errors.PageRenderError` message naming the limit, and a fresh worker carries on with the
next page. Where the OS lacks these (Windows), pages are still isolated, just not bounded.

>>> import io
>>> buf = io.BytesIO()
>>> write_frame(buf, {"number": 1}, b"abc")
>>> _ = buf.seek(0)
>>> read_frame(buf, max_payload=3)
({'number': 1}, b'abc')
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from internvl_tools.documents.sizing import PageLimits
from internvl_tools.documents.sources import DocumentSource
from internvl_tools.errors import DocumentError

try:  # POSIX only
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None  # type: ignore[assignment]

__all__ = [
    "PIPE_BYTES",
    "SPARE",
    "PageWorker",
    "SpareWorker",
    "WorkerDied",
    "read_frame",
    "render_in_workers",
    "spawn_worker",
    "widen_pipe",
    "write_frame",
]

_HEAD = struct.Struct(">II")
#: Largest JSON header a frame may carry (a page's text layer travels in it).
MAX_HEADER_BYTES = 64 * 1024 * 1024
_BOOT = "from internvl_tools.documents.rasterize import serve_worker; serve_worker()"
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class WorkerDied(DocumentError):
    """The worker process ended in the middle of a document (a limit was hit, or PDFium crashed)."""

    def __init__(self, message: str, returncode: int | None) -> None:
        super().__init__(message)
        self.returncode = returncode


# ---------------------------------------------------------------------------------------------------- framing


def write_frame(fh: IO[bytes], header: dict, payload: bytes | memoryview = b"") -> None:
    """One frame: lengths, a JSON header, raw payload bytes."""
    head = json.dumps(header, separators=(",", ":")).encode()
    fh.write(_HEAD.pack(len(head), len(payload)))
    fh.write(head)
    if len(payload):
        fh.write(payload)
    fh.flush()


#: Capacity asked for the worker's page pipe (Linux ``F_SETPIPE_SZ``; 1 MiB is the default ``pipe-max-size``).
PIPE_BYTES = 1 << 20


def widen_pipe(fh: IO[bytes] | None, size: int = PIPE_BYTES) -> int | None:
    """Ask the kernel for a ``size``-byte pipe behind ``fh``; returns the capacity now, or ``None`` where unsupported.

    A page crosses the pipe in capacity-sized reads, and each read gives the GIL away: behind a busy Python thread
    taking it back costs up to the switch interval (5 ms), so a 6 MB A4 page took ~100 such waits through the
    default 64 KiB pipe and takes ~6 through a 1 MiB one.

    >>> r, w = os.pipe()
    >>> with os.fdopen(r, "rb") as fh:
    ...     capacity = widen_pipe(fh, 1 << 18)
    >>> os.close(w)
    >>> capacity is None or capacity >= 1 << 16
    True
    """
    if fh is None:
        return None
    try:
        import fcntl

        setpipe = getattr(fcntl, "F_SETPIPE_SZ", 1031 if sys.platform.startswith("linux") else None)
        if setpipe is None:
            return None
        return fcntl.fcntl(fh.fileno(), setpipe, size)
    except (ImportError, OSError):  # not Linux, or over the system's pipe-max-size: keep the default
        return None


def _read_exact(fh: IO[bytes], n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = fh.read(left)
        if not chunk:
            raise EOFError(f"the stream ended {left} bytes short of a {n}-byte field")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_frame(fh: IO[bytes], max_payload: int) -> tuple[dict, bytes] | None:
    """The next frame, ``None`` at a clean end of stream; ``ValueError``/``EOFError`` for a broken one."""
    head = fh.read(_HEAD.size)
    if not head:
        return None
    if len(head) < _HEAD.size:
        head += _read_exact(fh, _HEAD.size - len(head))
    n_head, n_payload = _HEAD.unpack(head)
    if n_head > MAX_HEADER_BYTES or n_payload > max_payload:
        raise ValueError(f"frame of {n_head} + {n_payload} bytes is over the limits")
    header = json.loads(_read_exact(fh, n_head))
    if not isinstance(header, dict):
        raise ValueError("frame header is not a JSON object")
    return header, _read_exact(fh, n_payload)


# ---------------------------------------------------------------------------------------------------- child side


def apply_memory_limit(limits: PageLimits) -> None:
    """Cap this process's address space at its current size plus ``limits.memory_mb`` (POSIX; no-op elsewhere)."""
    if resource is None or limits.memory_mb is None:
        return
    current = _address_space()
    if current is None:
        return
    cap = current + limits.memory_mb * 1024 * 1024
    with contextlib.suppress(ValueError, OSError):  # a hard limit already lower: keep it
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def _address_space() -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


@contextlib.contextmanager
def page_cpu_limit(limits: PageLimits) -> Iterator[None]:
    """Arm a CPU-time timer for one page; its signal (SIGPROF, default action: terminate) ends the process."""
    armed = limits.timeout_s is not None and hasattr(signal, "setitimer")
    if armed:
        signal.signal(signal.SIGPROF, signal.SIG_DFL)
        signal.setitimer(signal.ITIMER_PROF, float(limits.timeout_s))  # type: ignore[arg-type]
    try:
        yield
    finally:
        if armed:
            signal.setitimer(signal.ITIMER_PROF, 0)


def read_job(fh: IO[bytes]) -> tuple[dict, bytes]:
    """The job the parent sent: a header frame whose payload is the PDF's bytes (empty when it names a path)."""
    frame = read_frame(fh, max_payload=1 << 40)
    if frame is None:
        raise EOFError("the parent sent no job")
    return frame


# ---------------------------------------------------------------------------------------------------- parent side


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    return env


def spawn_worker(env: dict[str, str] | None = None) -> tuple[subprocess.Popen, IO[bytes]]:
    """Start a render worker (it imports, then waits for its one job on stdin); returns it and its stderr file."""
    stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the worker; PageWorker.close() closes it
    proc = subprocess.Popen(
        [sys.executable, "-c", _BOOT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        env=_worker_env() if env is None else env,
        close_fds=True,
    )
    widen_pipe(proc.stdout)
    return proc, stderr


class SpareWorker:
    """One started, idle render worker kept for the next document, so it skips the interpreter start (~0.2 s).

    :meth:`take` hands out the spare (or a new worker when there is none, it died, the environment changed or this
    is a forked child) and starts the next spare at once, while the caller's document renders. Every worker still
    serves exactly one job and exits, so no state crosses documents; an idle spare costs one small process, ends
    by itself when this process exits (its stdin closes) and is killed by :meth:`close` (run at exit).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: tuple[subprocess.Popen, IO[bytes], dict[str, str], int] | None = None

    def take(self) -> tuple[subprocess.Popen, IO[bytes]]:
        env = _worker_env()
        with self._lock:
            held, self._held = self._held, None
        if held is not None:
            proc, stderr, spawned_env, owner = held
            if owner == os.getpid() and spawned_env == env and proc.poll() is None:
                self._refill(env)
                return proc, stderr
            _reap(proc, stderr)
        taken = spawn_worker(env)
        self._refill(env)
        return taken

    def _refill(self, env: dict[str, str]) -> None:
        spare = spawn_worker(env)
        with self._lock:
            old, self._held = self._held, (*spare, env, os.getpid())
        if old is not None:
            _reap(old[0], old[1])

    def close(self) -> None:
        """Kill and reap the spare, if any (safe to call twice)."""
        with self._lock:
            held, self._held = self._held, None
        if held is not None and held[3] == os.getpid():
            _reap(held[0], held[1])


def _reap(proc: subprocess.Popen, stderr: IO[bytes]) -> None:
    with contextlib.suppress(OSError, ValueError):
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    for stream in (proc.stdin, proc.stdout, stderr):
        with contextlib.suppress(OSError, ValueError):
            if stream is not None:
                stream.close()


#: The process-wide spare worker (see :class:`SpareWorker`).
SPARE = SpareWorker()
atexit.register(SPARE.close)


class PageWorker:
    """One worker process rendering ``indices`` of a PDF; read its pages with :meth:`next_item`, then :meth:`close`.

    ``next_item`` returns a page dict (``raw`` holds ``((width, height), rgb_bytes)``), ``None`` when the worker is
    done, or raises :class:`WorkerDied`.
    """

    def __init__(
        self,
        src: DocumentSource,
        password: str | None,
        indices: list[int],
        opts: dict,
        limits: PageLimits,
        max_pixels: int,
    ) -> None:
        self.limits = limits
        self._max_payload = 3 * max_pixels
        self._proc, self._stderr = SPARE.take()
        job = {
            "name": src.name,
            "path": src.path,
            "password": password,
            "indices": indices,
            "opts": opts,
            "timeout_s": limits.timeout_s,
            "memory_mb": limits.memory_mb,
        }
        try:
            write_frame(self._proc.stdin, job, src.data if src.path is None and src.data else b"")  # type: ignore[arg-type]
            self._proc.stdin.close()  # type: ignore[union-attr]
        except OSError:  # it died at once; next_item reports how
            pass

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def exitcode(self) -> int | None:
        return self._proc.poll()

    def is_alive(self) -> bool:
        return self._proc.poll() is None

    def next_item(self) -> dict | None:
        try:
            frame = read_frame(self._proc.stdout, self._max_payload)  # type: ignore[arg-type]
        except (ValueError, EOFError, OSError) as exc:
            self._kill()
            raise WorkerDied(
                f"the renderer process broke the protocol or died mid-page ({exc})", self._proc.returncode
            ) from None
        if frame is None:
            code = self._proc.wait()
            raise WorkerDied(self._death_message(code), code)
        header, payload = frame
        if header.get("done"):
            return None
        if payload:
            size = header.pop("size", None)
            if not (isinstance(size, list) and len(size) == 2 and size[0] * size[1] * 3 == len(payload)):
                self._kill()
                raise WorkerDied("the renderer process sent a page whose size does not match its pixels", None)
            header["raw"] = ((int(size[0]), int(size[1])), payload)
        return header

    def _death_message(self, code: int | None) -> str:
        limits = self.limits
        prof = getattr(signal, "SIGPROF", None)
        if prof is not None and code == -prof:
            return (
                f"rendering took more than {limits.timeout_s:g} s of CPU time (the per-page limit); the page is "
                "probably pathological (millions of drawing operations). Pass page_timeout=... to "
                "render_pages or read_pdf to allow more."
            )
        if code is not None and code < 0:
            try:
                how = f"signal {signal.Signals(-code).name}"
            except ValueError:
                how = f"signal {-code}"
        else:
            how = f"exit code {code}"
        limit = (
            ""
            if limits.memory_mb is None
            else (
                f"; most likely it needed more than the {limits.memory_mb} MiB per-page memory limit (pass "
                "page_memory_mb=... to render_pages or read_pdf to allow more)"
            )
        )
        return f"the renderer process died ({how}) on this page{limit}{self._stderr_tail()}"

    def _stderr_tail(self) -> str:
        try:
            self._stderr.seek(0, os.SEEK_END)
            size = self._stderr.tell()
            self._stderr.seek(max(0, size - 400))
            tail = self._stderr.read().decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""
        return f"; its last words: {tail.splitlines()[-1][:200]!r}" if tail else ""

    def _kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()

    def close(self) -> None:
        """Stop the worker and reap it (no zombie, no orphan), even mid-page; safe to call twice."""
        with contextlib.suppress(OSError):
            self._kill()
        for stream in (self._proc.stdout, self._proc.stdin, self._stderr):
            with contextlib.suppress(OSError, ValueError):
                if stream is not None:
                    stream.close()


def render_in_workers(
    src: DocumentSource,
    password: str | None,
    indices: list[int],
    opts: dict,
    limits: PageLimits,
    max_pixels: int,
    started: Callable[[PageWorker], None] = lambda worker: None,
) -> Iterator[dict]:
    """Page dicts for ``indices``, in order, from worker processes (each passed to ``started``).

    A page that ends its worker (a limit, a crash) comes back as a failed page naming the cause, and a fresh
    worker resumes after it. Closing the generator stops and reaps the current worker.
    """
    remaining = list(indices)
    while remaining:
        worker = PageWorker(src, password, remaining, opts, limits, max_pixels)
        started(worker)
        try:
            while remaining:
                try:
                    item = worker.next_item()
                except WorkerDied as died:
                    failed = remaining.pop(0)
                    yield {
                        "number": failed + 1,
                        "label": str(failed + 1),
                        "width_pt": 0.0,
                        "height_pt": 0.0,
                        "scale": 0.0,
                        "error": f"page {failed + 1}: {died}",
                        "error_type": "PageRenderError",
                    }
                    break
                if item is None or "fatal" in item:
                    if item is not None:
                        yield item
                    return
                number = item.get("number")
                if not isinstance(number, int) or number - 1 not in remaining:
                    raise DocumentError(f"The renderer process sent page {number!r}, which was not asked for.")
                remaining.remove(number - 1)
                yield item
        finally:
            worker.close()
