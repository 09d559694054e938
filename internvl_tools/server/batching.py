"""The server's micro-batcher: concurrent requests that arrive together become one ``engine.batch`` call."""

from __future__ import annotations

import asyncio
import contextlib
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from internvl_tools.errors import ConfigError

__all__ = ["MicroBatcher"]


class MicroBatcher:
    """Collect requests that arrive within ``window_s`` of each other into one ``engine.batch`` call.

    Requests are grouped by their generation options (one ``batch`` call decodes with one set); while a batch
    runs, new requests queue and form the next one. The window is only waited for after a batch of several
    requests, so a single client pays no latency. Generation runs on ``executor`` (one thread).
    """

    def __init__(
        self, engine: Any, executor: ThreadPoolExecutor, *, max_batch_size: int = 8, window_s: float = 0.005
    ) -> None:
        if max_batch_size < 1:
            raise ConfigError(f"max_batch_size must be >= 1, got {max_batch_size}.")
        self.engine, self.executor = engine, executor
        self.max_batch_size, self.window_s = max_batch_size, window_s
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self.batches: list[int] = []  # sizes of the engine.batch calls made (for tests and /health)

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def submit(self, messages: list[Any], options: dict[str, Any]) -> Any:
        assert self._queue is not None, "MicroBatcher.start() was not called"
        future = asyncio.get_running_loop().create_future()
        key = json.dumps(options, sort_keys=True)
        await self._queue.put((key, messages, options, future))
        return await future

    async def _loop(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            pending = [await self._queue.get()]
            # A lone client should not pay the window: wait for company only when requests have been coming
            # together (the last batch had several); what queued meanwhile is taken either way.
            window = self.window_s if self.batches and self.batches[-1] > 1 else 0.0
            deadline = loop.time() + window
            while len(pending) < self.max_batch_size:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    while len(pending) < self.max_batch_size and not self._queue.empty():
                        pending.append(self._queue.get_nowait())
                    break
                try:
                    pending.append(await asyncio.wait_for(self._queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
            groups: dict[str, list[Any]] = {}
            for item in pending:
                if not item[3].done():  # the client may have gone away while waiting
                    groups.setdefault(item[0], []).append(item)
            for items in groups.values():
                await self._run(loop, items)

    async def _run(self, loop: asyncio.AbstractEventLoop, items: list[Any]) -> None:
        conversations = [item[1] for item in items]
        options = items[0][2]
        self.batches.append(len(items))

        def call() -> list[Any]:
            return self.engine.batch(conversations, batch_size=len(conversations), **options)

        try:
            results = await loop.run_in_executor(self.executor, call)
        except Exception as exc:
            for item in items:
                if not item[3].done():
                    item[3].set_exception(exc)
            return
        for item, result in zip(items, results, strict=True):
            if not item[3].done():
                item[3].set_result(result)
