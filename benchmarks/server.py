"""Server benchmark: requests/s of ``internvl-tools serve`` on the tiny checkpoint under 1, 4 and 16 concurrent
clients, with the micro-batcher on and off (``--no-batching``), measured side by side in one run.

Each client sends chat requests with one small image through ``InternVL.from_server`` (a thread per client).
With batching on, requests that arrive together are answered by one ``engine.batch`` call, so throughput grows
with concurrency; with it off they are answered one at a time.

Run: ``.venv/bin/python benchmarks/server.py [--requests 48] [--max-tokens 16]`` (CPU, single-threaded torch).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
from PIL import Image

CONCURRENCY = (1, 4, 16)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(model: str, batching: bool) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "internvl_tools.server",
        model,
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--max-batch-size",
        "16",
    ]
    if not batching:
        cmd.append("--no-batching")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not start within 120 s")


def _conversation(i: int) -> list[dict]:
    rng = np.random.default_rng(i)
    image = Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8))
    return [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": f"Q{i}?"}]}]


def _throughput(base: str, clients: int, requests: int, max_tokens: int) -> float:
    from internvl_tools import InternVL

    vlm = InternVL.from_server(base, max_concurrency=clients, timeout=120)
    conversations = [_conversation(i) for i in range(requests)]
    vlm.chat(conversations[0], max_new_tokens=max_tokens)  # warm-up (and model discovery)

    def client(k: int) -> None:
        for conv in conversations[k::clients]:
            vlm.chat(conv, max_new_tokens=max_tokens)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(client, range(clients)))
    elapsed = time.perf_counter() - started
    vlm.close()
    return requests / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=48, help="requests per measurement")
    parser.add_argument("--max-tokens", type=int, default=16, help="new tokens per answer")
    args = parser.parse_args()
    from internvl_tools.testing import tiny_checkpoint

    model = str(tiny_checkpoint("qwen2", "native"))
    table: dict[bool, dict[int, float]] = {}
    for batching in (True, False):
        proc, base = _start(model, batching)
        try:
            table[batching] = {c: _throughput(base, c, args.requests, args.max_tokens) for c in CONCURRENCY}
        finally:
            proc.terminate()
            proc.wait(10)
    print(
        f"internvl-tools serve, tiny checkpoint, {args.requests} requests of {args.max_tokens} new tokens, "
        "one 128x96 image each"
    )
    print(f"{'clients':>8} {'batching on':>14} {'batching off':>14} {'speed-up':>9}")
    for c in CONCURRENCY:
        on, off = table[True][c], table[False][c]
        print(f"{c:>8} {on:>10.1f} r/s {off:>10.1f} r/s {on / off:>8.2f}x")


if __name__ == "__main__":
    main()
