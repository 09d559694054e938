"""End to end: langchain's create_agent, a scripted planner, and the InternVL grounding tool on a local image."""

from __future__ import annotations

from pathlib import Path

from internvl_tools import GroundingResult
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, ToolMessage

from langchain_internvl import InternVLGroundingTool
from tests.integration_tests.scripted import ScriptedPlanner


def _call(args: dict, call_id: str) -> AIMessage:
    return AIMessage("", tool_calls=[{"name": "internvl_grounding", "args": args, "id": call_id, "type": "tool_call"}])


def test_agent_grounds_a_local_image_and_survives_a_path_escape(media_dir: Path, tiny: str) -> None:
    tool = InternVLGroundingTool(model=tiny, device="cpu", allowed_dirs=[str(media_dir)], max_tokens=24)
    planner = ScriptedPlanner(script=[
        _call({"image": "street.png", "phrase": "the red box"}, "c1"),
        _call({"image": "../secret.png", "phrase": "the blue box"}, "c2"),
        AIMessage("All done."),
    ])  # fmt: skip
    agent = create_agent(planner, tools=[tool])

    state = agent.invoke({"messages": [{"role": "user", "content": "Where is the red box in street.png?"}]})

    tool_messages = [m for m in state["messages"] if isinstance(m, ToolMessage)]
    assert [m.tool_call_id for m in tool_messages] == ["c1", "c2"]
    ok, refused = tool_messages
    assert ok.status == "success"
    assert isinstance(ok.artifact, GroundingResult)
    assert ok.artifact.image_size == (64, 48)  # the boxes are in pixels of this image
    assert "the red box" in ok.content and "64x48" in ok.content
    assert refused.status == "error" and "'..'" in refused.content and refused.artifact is None
    # The planner saw both results before its last turn, and the run ended normally.
    assert [m.tool_call_id for m in planner.seen[-1] if isinstance(m, ToolMessage)] == ["c1", "c2"]
    assert state["messages"][-1].content == "All done."
