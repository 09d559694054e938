"""Which ``malloc`` a training process runs on.

Under the training loop's ever-changing tensor sizes (length-sorted micro-batches of 1-7 tiles), glibc's allocator
fragments. On this project's 2-core machine a step of run 6's recipe went from 1.08 s to 1.24 s within 300 steps,
and the tenth run's from 1.24 s to 1.62 s by step 1600; the same command on jemalloc ran its first 500 steps at
0.78-0.86 s, flat, in 2.2 GB instead of 3.9 (``docs/tiny_trained_vlm.md``, "Steps get slower within a run").
Neither allocator changes a number the model computes. The allocator is chosen when a process starts
(``LD_PRELOAD``), so :func:`plan` says which environment ``python -m internvl_tools.demo.train`` should re-execute
itself with.

>>> plan("system", {}, find=lambda: "libjemalloc.so.2") is None
True
>>> plan("auto", {"LD_PRELOAD": "libfoo.so"}, find=lambda: "libjemalloc.so.2")["LD_PRELOAD"]
'libfoo.so:libjemalloc.so.2'
"""

from __future__ import annotations

import ctypes.util
from collections.abc import Callable, Mapping

__all__ = ["ALLOCATORS", "AllocatorNotFound", "find_jemalloc", "in_use", "plan"]

#: ``auto``: jemalloc when the machine has it, else glibc's with a warning; ``jemalloc``: jemalloc or an error;
#: ``system``: whatever the process started with.
ALLOCATORS = ("auto", "jemalloc", "system")


class AllocatorNotFound(RuntimeError):
    """``jemalloc`` was asked for and this machine has no ``libjemalloc``."""


def find_jemalloc() -> str | None:
    """The soname of this machine's jemalloc (``libjemalloc.so.2``), or None; ``LD_PRELOAD`` resolves a soname."""
    return ctypes.util.find_library("jemalloc")


def in_use(env: Mapping[str, str]) -> str:
    """``jemalloc`` when a process with environment ``env`` has it preloaded, else ``system``.

    >>> in_use({"LD_PRELOAD": "libjemalloc.so.2"}), in_use({})
    ('jemalloc', 'system')
    """
    return "jemalloc" if "jemalloc" in env.get("LD_PRELOAD", "") else "system"


def plan(allocator: str, env: Mapping[str, str], find: Callable[[], str | None] | None = None) -> dict[str, str] | None:
    """The environment to re-execute with so the process runs on ``allocator``, or None to go on as it is.

    None when ``allocator`` is ``system``, when jemalloc is already preloaded, or (``auto``) when the machine has
    none. ``find`` looks for the library (default :func:`find_jemalloc`). Raises :class:`AllocatorNotFound` for
    ``jemalloc`` without a library, and ValueError for a name outside :data:`ALLOCATORS`.

    >>> plan("jemalloc", {}, find=lambda: None)
    Traceback (most recent call last):
    ...
    internvl_tools.demo.allocator.AllocatorNotFound: jemalloc was asked for and this machine has none: install it \
(apt install libjemalloc2) or pass --allocator system
    """
    if allocator not in ALLOCATORS:
        raise ValueError(f"allocator must be one of {', '.join(ALLOCATORS)}, not {allocator!r}")
    if allocator == "system" or in_use(env) == "jemalloc":
        return None
    library = (find or find_jemalloc)()
    if library is None:
        if allocator == "jemalloc":
            raise AllocatorNotFound(
                "jemalloc was asked for and this machine has none: install it (apt install libjemalloc2) "
                "or pass --allocator system"
            )
        return None
    preload = env.get("LD_PRELOAD", "")
    return {**env, "LD_PRELOAD": f"{preload}:{library}" if preload else library}
