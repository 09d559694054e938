"""Strings and numbers that come from the InternVL models themselves, kept in one place.

Sources: OpenGVLab/InternVL ``internvl_chat/internvl/conversation.py`` and ``train/constants.py``
(see ``docs/internvl_reference.md`` §1–2). Also the package's own named limits and defaults, so that no number or
model name is written twice.
"""

from __future__ import annotations

IMG_START_TOKEN = "<img>"
IMG_END_TOKEN = "</img>"
IMG_CONTEXT_TOKEN = "<IMG_CONTEXT>"
IMAGE_PLACEHOLDER = "<image>"
VIDEO_PLACEHOLDER = "<video>"
#: The image tokens by the names transformers' InternVL processor looks up on the tokenizer (``extra_special_tokens``).
PROCESSOR_SPECIAL_TOKENS: dict[str, str] = {
    "start_image_token": IMG_START_TOKEN,
    "end_image_token": IMG_END_TOKEN,
    "context_image_token": IMG_CONTEXT_TOKEN,
    "video_token": VIDEO_PLACEHOLDER,
}
QUAD_START_TOKEN = "<quad>"
QUAD_END_TOKEN = "</quad>"
REF_START_TOKEN = "<ref>"
REF_END_TOKEN = "</ref>"
BOX_START_TOKEN = "<box>"
BOX_END_TOKEN = "</box>"

#: The nine tokens InternVL training adds to the tokenizer (``add_tokens(..., special_tokens=True)``).
INTERNVL_SPECIAL_TOKENS: tuple[str, ...] = (
    IMG_START_TOKEN,
    IMG_END_TOKEN,
    IMG_CONTEXT_TOKEN,
    QUAD_START_TOKEN,
    QUAD_END_TOKEN,
    REF_START_TOKEN,
    REF_END_TOKEN,
    BOX_START_TOKEN,
    BOX_END_TOKEN,
)
#: Grounding tokens that we keep in decoded text (the official ``chat()`` strips them).
GROUNDING_TOKENS: tuple[str, ...] = INTERNVL_SPECIAL_TOKENS[3:]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
CLIP_MEAN: tuple[float, float, float] = (0.4814546248, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

DEFAULT_IMAGE_SIZE = 448
#: Tile budget per image when neither the caller nor the checkpoint sets one (README ``load_image``, InternVL3/3.5
#: training, transformers' GotOcr2 ``max_patches``; docs/internvl_reference.md §2.1).
DEFAULT_MAX_TILES = 12
#: Largest tile budget per image the package accepts (CLI, server, engines, request models); grid selection is
#: verified against upstream up to this budget (docs/internvl_reference.md §5).
MAX_TILES_LIMIT = 40
DEFAULT_TOKENS_PER_TILE = 256

#: Most bytes the server client reads for one answer: a JSON body, or a whole event stream (raise
#: ``RemoteInternVL(max_response_bytes=...)`` for longer streamed answers).
REMOTE_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
#: Most bytes in one line of a server's event stream (one ``data:`` event of an OpenAI chunk is a few hundred).
REMOTE_MAX_EVENT_BYTES = 1024 * 1024

#: The checkpoint used when none is named (CLI, integrations): transformers-native, small, loads without remote code.
DEFAULT_MODEL = "OpenGVLab/InternVL3-1B-hf"

#: System message of the Hermes-2, internlm2-chat and phi3-chat templates (note "InternVL, " with ASCII comma).
SYSTEM_MESSAGE_OLD = (
    "你是由上海人工智能实验室联合商汤科技开发的书生多模态大模型，英文名叫InternVL, 是一个有用无害的人工智能助手。"
)
#: System message of the internvl2_5 template (InternVL2.5, 3, 3.5).
SYSTEM_MESSAGE_25 = (
    "你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的多模态大语言模型。"
)
#: System message of the internvl3_5_gpt_oss template.
SYSTEM_MESSAGE_GPT_OSS = (
    "You are InternVL, a large language model trained by Shanghai AI Laboratory.\n"
    "Knowledge cutoff: 2024-06\nCurrent date: 2025-08-06\n\nReasoning: low\n\n"
    "# Valid channels: final. Channel must be included for every message."
)

#: Official prompts (see docs/internvl_reference.md §4).
GROUNDING_PROMPT = "Please provide the bounding box coordinate of the region this sentence describes: <ref>{}</ref>"
DETECTION_PROMPT = "Please detect and label all objects in the following image and mark their positions."
GROUNDING_SCALE = 1000

#: Environment variable holding the API key of an OpenAI-compatible server (``serve``, the remote engine).
API_KEY_ENV = "INTERNVL_TOOLS_API_KEY"
#: Older names still read, with a DeprecationWarning.
LEGACY_API_KEY_ENVS: tuple[str, ...] = ("INTERNVL_API_KEY",)
