"""The public surface, pinned: adding or dropping a public name is a deliberate change to this file.

Each module writes its public names once, in a literal ``__all__`` list of names it defines itself; subpackages
re-export their modules' ``__all__``; the top level is derived from the modules in ``PUBLIC_MODULES``.
"""

from __future__ import annotations

import ast
import importlib
import warnings
from pathlib import Path

import pytest

import internvl_tools

PACKAGE = Path(internvl_tools.__file__).parent

# --- pinned: generated from the code, then reviewed; edit by hand when the API changes on purpose
EXPECTED_TOP_LEVEL = [
    "BoundingBox",
    "ChatPrompt",
    "ChatResult",
    "CheckpointInfo",
    "ConfigError",
    "ContextLengthError",
    "CoordSystem",
    "DEFAULT_IMAGE_FORMATS",
    "DEFAULT_LONGEST_SIDE",
    "DEFAULT_MAX_NEW_TOKENS",
    "DEFAULT_PALETTE",
    "DETECTION_ANSWER_PREFACE",
    "DamagedRecordWarning",
    "DependencyMissingError",
    "DocumentError",
    "DocumentSource",
    "DocumentSummary",
    "EngineSettings",
    "FamilyInfo",
    "FetchError",
    "FinishReason",
    "GROUNDED_OCR_PROMPT",
    "GROUNDED_OCR_PROMPT_ZH",
    "GenerationError",
    "GenerationOptions",
    "GroundedObject",
    "GroundingResult",
    "GroundingWarning",
    "ImageDecodeError",
    "ImagePart",
    "ImageSlot",
    "ImageTooLargeError",
    "ImageTooSmallError",
    "InternVL",
    "InternVLError",
    "JSONSchemaLogitsProcessor",
    "JSON_SCHEMA_INSTRUCTION",
    "MediaError",
    "MediaNotFoundError",
    "MediaPolicy",
    "MediaPolicyError",
    "Message",
    "ModelInfo",
    "ModelLoadError",
    "OpenAIBackend",
    "PageLimits",
    "PageRenderError",
    "PageResult",
    "PageSelectionError",
    "PageSpec",
    "PageStream",
    "Part",
    "PasswordError",
    "PathNotAllowedError",
    "PromptTurn",
    "REGION_PROMPT",
    "ReadOptions",
    "RegionDescription",
    "RemoteFetchDisabledError",
    "RemoteInfo",
    "RemoteInternVL",
    "RenderStream",
    "RenderedPage",
    "ServerAuthError",
    "ServerConnectionError",
    "ServerError",
    "ServerRequestError",
    "ServerTimeoutError",
    "StructuredOutputError",
    "TEMPLATES",
    "Template",
    "TemplateError",
    "TextPart",
    "TextStream",
    "TiledImage",
    "UNLABELED",
    "URLBlockedError",
    "UnsupportedSourceError",
    "Usage",
    "VideoError",
    "VideoFrames",
    "VideoPart",
    "VideoSlot",
    "VisionLanguageModel",
    "WarningCode",
    "__version__",
    "allowed_formats",
    "api_key_from_env",
    "balanced_device_map",
    "build_chat_prompt",
    "build_prompt",
    "candidate_grids",
    "check_image_size",
    "checkpoint_format",
    "compile_json_schema",
    "completed_pages",
    "concat_tiles",
    "confine_path",
    "decode_frame",
    "default_longest_side",
    "describe_source",
    "detect_family",
    "detect_template",
    "detection_prompt",
    "draw",
    "draw_grounding",
    "encode_image",
    "escape_control_characters",
    "expand_image_placeholders",
    "format_box",
    "get_template",
    "grid_longest_side",
    "grounded_ocr_prompt",
    "grounding_prompt",
    "image_tokens",
    "iter_jsonl",
    "json_instruction",
    "json_schema_of",
    "llm_type_of",
    "load_image",
    "load_images",
    "load_model",
    "load_results",
    "load_tokenizer",
    "load_video",
    "minimal_json_length",
    "normalize_messages",
    "num_tiles_for",
    "open_confined",
    "open_image",
    "open_source",
    "page_count",
    "parse_grounding",
    "parse_pages",
    "quantization_config",
    "read_checkpoint_info",
    "read_pdf",
    "redact_url",
    "region_prompt",
    "render_pages",
    "repair_jsonl_tail",
    "resolve_attn_implementation",
    "resolve_device",
    "resolve_dtype",
    "resolve_local_path",
    "sample_frame_indices",
    "select_grid",
    "split_tile_budget",
    "tile_budget",
    "tile_grid_for",
    "tile_image",
    "tile_images",
    "to_data_uri",
    "to_markdown",
    "user_message",
    "validate_output",
    "write_jsonl",
    "write_markdown",
]

EXPECTED_SUBPACKAGES = {
    "internvl_tools.media": [
        "DEFAULT_IMAGE_FORMATS",
        "MediaPolicy",
        "VideoFrames",
        "allowed_formats",
        "check_image_size",
        "check_url",
        "confine_path",
        "decode_frame",
        "describe_source",
        "encode_image",
        "fetch_bytes",
        "load_image",
        "load_images",
        "load_video",
        "open_confined",
        "open_image",
        "redact_url",
        "resolve_local_path",
        "sample_frame_indices",
        "to_data_uri",
    ],
    "internvl_tools.prompts": [
        "ChatPrompt",
        "ImageSlot",
        "PromptTurn",
        "TEMPLATES",
        "Template",
        "VideoSlot",
        "build_chat_prompt",
        "build_prompt",
        "expand_image_placeholders",
        "get_template",
        "image_tokens",
    ],
    "internvl_tools.checkpoints": [
        "CheckpointInfo",
        "FamilyInfo",
        "apply_pixel_shuffle_v1",
        "balanced_device_map",
        "checkpoint_format",
        "convert_original_state_dict",
        "detect_family",
        "detect_template",
        "llm_type_of",
        "load_model",
        "load_tokenizer",
        "merge_internlm2_wqkv",
        "merge_vit_qkv",
        "native_config_from_original",
        "quantization_config",
        "read_checkpoint_info",
        "resolve_attn_implementation",
        "resolve_device",
        "resolve_dtype",
        "split_internlm2_wqkv",
        "split_vit_qkv",
        "to_original_state_dict",
    ],
    "internvl_tools.generation": [
        "Cancelled",
        "DEFAULT_MAX_NEW_TOKENS",
        "GenerationOptions",
        "JSONSchemaLogitsProcessor",
        "JSON_SCHEMA_INSTRUCTION",
        "MAX_PARALLEL_CALLS",
        "StopStrings",
        "TOOL_CALL_SLACK",
        "TextStream",
        "allowed_tools",
        "chat_special_ids",
        "compile_json_schema",
        "cut_at_stop",
        "decode",
        "decode_tokens",
        "encode_prompt",
        "escape_control_characters",
        "json_instruction",
        "json_schema_of",
        "minimal_call_length",
        "minimal_json_length",
        "new_call_id",
        "normalize_tool_choice",
        "parse_tool_answer",
        "render_parallel_calls",
        "render_tool_call",
        "tool_call_budget",
        "tool_call_schema",
        "tool_instructions",
        "validate_output",
        "visible_text",
    ],
    "internvl_tools.engines": [
        "DEMO_MODEL_NAMES",
        "EngineSettings",
        "InputSettings",
        "InternVL",
        "LoadedModel",
        "ModelInfo",
        "OpenAIBackend",
        "PreparedInput",
        "RemoteInfo",
        "RemoteInternVL",
        "VisionLanguageModel",
        "api_key_from_env",
        "check_context",
        "check_input_settings",
        "finish_result",
        "generate_rows",
        "load_shared",
        "prepare_input",
        "resolve_model_source",
        "stream_deltas",
    ],
    "internvl_tools.grounding": [
        "BoundingBox",
        "CoordSystem",
        "DEFAULT_PALETTE",
        "DETECTION_ANSWER_PREFACE",
        "GROUNDED_OCR_PROMPT",
        "GROUNDED_OCR_PROMPT_ZH",
        "GroundedObject",
        "GroundingResult",
        "GroundingWarning",
        "REGION_PROMPT",
        "RegionDescription",
        "UNLABELED",
        "WarningCode",
        "detection_prompt",
        "draw",
        "draw_grounding",
        "format_box",
        "format_grounding",
        "grounded_ocr_prompt",
        "grounding_prompt",
        "parse_grounding",
        "region_prompt",
        "to_internvl_record",
        "to_swift_record",
        "write_jsonl",
    ],
    "internvl_tools.documents": [
        "CHART_PROMPT",
        "DEFAULT_LONGEST_SIDE",
        "DEFAULT_MAX_NEW_TOKENS",
        "DamagedRecordWarning",
        "DocumentSource",
        "DocumentSummary",
        "NO_CHART",
        "OCR_PROMPT",
        "PageLimits",
        "PageResult",
        "PageSpec",
        "PageStream",
        "RELEVANCE_PROMPT",
        "ReadOptions",
        "RenderStream",
        "RenderedPage",
        "SCHEMA_PROMPT",
        "TEXT_TASKS",
        "completed_pages",
        "default_longest_side",
        "grid_longest_side",
        "iter_jsonl",
        "load_results",
        "open_source",
        "page_count",
        "parse_chart_answer",
        "parse_markdown_table",
        "parse_pages",
        "read_pdf",
        "render_pages",
        "repair_jsonl_tail",
        "tile_grid_for",
        "to_markdown",
        "write_jsonl",
        "write_markdown",
    ],
    "internvl_tools.mcp": [
        "AnswerResult",
        "BearerAuth",
        "Box",
        "COORDINATE_SPACE",
        "CallCancelled",
        "DEFAULT_MCP_PORT",
        "ExtractResult",
        "LocateResult",
        "OCRPage",
        "OCRResult",
        "RegionResult",
        "SERVER_NAME",
        "SourceInfo",
        "ToolPolicy",
        "ask_image",
        "build_parser",
        "create_server",
        "describe_region",
        "extract_json",
        "http_app",
        "load_visual",
        "locate_phrase",
        "main",
        "ocr_document",
        "require_mcp",
        "run_stdio",
    ],
    "internvl_tools.server": [
        "API_KEY_ENV",
        "CHARS_PER_TOKEN_CEILING",
        "ChatCompletionRequest",
        "ChatRequest",
        "DEFAULT_PORT",
        "MicroBatcher",
        "RequestError",
        "ServerSettings",
        "build_media_policy",
        "build_parser",
        "check_json_schema",
        "check_prompt_size",
        "create_app",
        "error_body",
        "error_result_to_request_error",
        "from_engine_error",
        "has_remote_images",
        "main",
        "parse_body",
        "parse_messages",
        "parse_options",
        "parse_request",
        "parse_schema",
        "require_fastapi",
        "valid_api_key",
    ],
    "internvl_tools.testing": [
        "FAMILIES",
        "FORMATS",
        "HF_CHAT_TEMPLATE",
        "TINY_VOCAB_SIZE",
        "build_bpe_tokenizer",
        "make_tiny_checkpoint",
        "random_tiny_model",
        "tiny_checkpoint",
        "tiny_internvl_config",
        "write_internlm2_tokenizer",
    ],
    "internvl_tools.errors": [
        "ConfigError",
        "ContextLengthError",
        "DependencyMissingError",
        "DocumentError",
        "FetchError",
        "GenerationError",
        "ImageDecodeError",
        "ImageTooLargeError",
        "ImageTooSmallError",
        "InternVLError",
        "MediaError",
        "MediaNotFoundError",
        "MediaPolicyError",
        "ModelLoadError",
        "PageRenderError",
        "PageSelectionError",
        "PasswordError",
        "PathNotAllowedError",
        "RemoteFetchDisabledError",
        "ServerAuthError",
        "ServerConnectionError",
        "ServerError",
        "ServerRequestError",
        "ServerTimeoutError",
        "StructuredOutputError",
        "TemplateError",
        "URLBlockedError",
        "UnsupportedSourceError",
        "VideoError",
    ],
}
# --- end pinned


def test_top_level_names_are_pinned() -> None:
    assert sorted(internvl_tools.__all__) == EXPECTED_TOP_LEVEL


@pytest.mark.parametrize("package", sorted(EXPECTED_SUBPACKAGES))
def test_subpackage_names_are_pinned(package: str) -> None:
    assert sorted(importlib.import_module(package).__all__) == EXPECTED_SUBPACKAGES[package]


@pytest.mark.parametrize("name", EXPECTED_TOP_LEVEL)
def test_every_top_level_name_resolves_to_its_home(name: str) -> None:
    value = getattr(internvl_tools, name)
    assert value is not None


def test_each_top_level_name_has_one_home() -> None:
    homes: dict[str, list[str]] = {}
    for module in internvl_tools.PUBLIC_MODULES:
        for name in internvl_tools.module_all(module):
            homes.setdefault(name, []).append(module)
    assert {name: mods for name, mods in homes.items() if len(mods) > 1} == {}


def module_sources() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "demo/model" in path.as_posix() or path.name in ("__init__.py", "__main__.py"):
            continue
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out.append((".".join(parts), path))
    return out


@pytest.mark.parametrize(("module", "path"), module_sources(), ids=[m for m, _ in module_sources()])
def test_a_module_lists_only_names_it_defines(module: str, path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    defined: set[str] = set()
    declared: list[str] | None = None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.Assign):
            targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
            if "__all__" in targets:
                assert declared is None, f"{module} assigns __all__ twice"
                declared = list(ast.literal_eval(node.value))
            defined.update(targets)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            defined.add(node.target.id)
        elif isinstance(node, ast.AugAssign) and getattr(node.target, "id", None) == "__all__":
            pytest.fail(f"{module} extends __all__ after the fact; write it once")
    if declared is None:
        return  # a script-like module (e.g. a __main__ helper) with no public names
    assert [name for name in declared if name not in defined] == []


def test_test_helpers_left_the_top_level_but_still_resolve() -> None:
    assert "tiny_checkpoint" not in internvl_tools.__all__
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        helper = internvl_tools.tiny_checkpoint
    from internvl_tools.testing import tiny_checkpoint

    assert helper is tiny_checkpoint
    assert any(
        issubclass(w.category, DeprecationWarning) and "internvl_tools.testing" in str(w.message) for w in caught
    )
