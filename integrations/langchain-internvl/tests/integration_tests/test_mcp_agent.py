"""A LangChain agent reaches InternVL through MCP: ``langchain-mcp-adapters`` starts ``internvl-tools mcp`` over
stdio, the agent (a scripted planner, as in test_agent.py) calls the grounding tool, and the boxes come back as
structured data (the tool's structured content, in pixels of the image, with its size)."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

from internvl_tools.demo import synth
from internvl_tools.demo.evaluate import iou
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, ToolMessage
from langchain_mcp_adapters.client import MultiServerMCPClient
from langchain_mcp_adapters.tools import load_mcp_tools

from tests.integration_tests.scripted import ScriptedPlanner


def _call(args: dict, call_id: str) -> AIMessage:
    return AIMessage("", tool_calls=[{"name": "internvl_locate", "args": args, "id": call_id, "type": "tool_call"}])


async def test_agent_grounds_through_mcp_and_gets_boxes_as_data(tmp_path: Path) -> None:
    rng = random.Random(616161)
    words = []
    for n in range(3):
        tile = synth.text_tile(rng)
        tile.image.save(tmp_path / f"tile{n}.png")
        texts = [w.text for w in tile.words]
        words += [(f"tile{n}.png", w) for w in tile.words if texts.count(w.text) == 1][:2]
    client = MultiServerMCPClient({
        "internvl": {
            "transport": "stdio",
            "command": sys.executable,
            "args": ["-m", "internvl_tools.mcp", "demo", "--allowed-dir", str(tmp_path)],
            "env": {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
        }
    })  # fmt: skip
    async with client.session("internvl") as session:
        tools = await load_mcp_tools(session)
        assert {"internvl_locate", "internvl_ocr", "internvl_ask"} <= {t.name for t in tools}
        calls = [_call({"image": image, "phrase": word.text}, f"c{k}") for k, (image, word) in enumerate(words)]
        escape = _call({"image": "../outside.png", "phrase": "x"}, "bad")
        planner = ScriptedPlanner(script=[*calls, escape, AIMessage("Done.")])
        agent = create_agent(planner, tools=[t for t in tools if t.name == "internvl_locate"])
        state = await agent.ainvoke({"messages": [{"role": "user", "content": "Where are the words?"}]})

    results = {m.tool_call_id: m for m in state["messages"] if isinstance(m, ToolMessage)}
    hits = []
    for k, (_, word) in enumerate(words):
        message = results[f"c{k}"]
        assert message.status == "success", message.content
        data = message.artifact["structured_content"]
        assert data["coordinate_space"] == "pixels" and data["input"]["image_size"] == [128, 128]
        assert data["phrase"] == word.text
        boxes = [(b["x1"], b["y1"], b["x2"], b["y2"]) for b in data["boxes"]]
        hits.append(bool(boxes) and iou(boxes[0], word.box) >= 0.5)
    # The demo model's boxes land on most words, not all (MODEL_CARD.md); one of these is enough to show the path.
    assert any(hits), hits
    assert results["bad"].status == "error" and "PathNotAllowedError" in str(results["bad"].content)
    assert state["messages"][-1].content == "Done."
