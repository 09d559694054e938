"""``internvl-tools serve``: one local engine behind the OpenAI-compatible API subset that clients need.

Endpoints: ``GET /v1/models``, ``POST /v1/chat/completions`` (text and ``image_url`` parts, ``stream``, ``stop``,
``max_tokens``, ``temperature``, ``top_p``, ``top_k``, ``seed``, ``response_format`` ``json_schema`` /
``json_object``) and an unauthenticated ``GET /health``. Concurrent non-streaming requests that arrive within a
few milliseconds of each other are answered by one ``engine.batch`` call (the micro-batcher); streaming and
structured requests run one by one. Images come as data URIs; remote image URLs are refused unless
``--allow-remote-images`` (then fetched under the :class:`~internvl_tools.MediaPolicy` SSRF guard); server paths
are never read. The server binds to loopback unless told otherwise and takes an optional API key
(``--api-key`` or ``$INTERNVL_TOOLS_API_KEY``).

    $ internvl-tools serve OpenGVLab/InternVL3-1B-hf --port 23333          # or: python -m internvl_tools.server
    >>> from internvl_tools import InternVL
    >>> vlm = InternVL.from_server("http://127.0.0.1:23333/v1")           # doctest: +SKIP

Modules, bottom up (each imports only those before it): ``errors`` (:class:`RequestError`, OpenAI error bodies),
``settings`` (:class:`ServerSettings`, :func:`build_parser`), ``validation`` (guards on the raw JSON body and on
``response_format`` schemas), ``requests`` (the OpenAI request model, parsed into messages and options),
``batching`` (:class:`MicroBatcher`), ``app`` (:func:`create_app`) and ``cli`` (:func:`main`). Importing the
package is cheap: FastAPI and uvicorn load only when an app is created or served.
"""

from typing import TYPE_CHECKING

from internvl_tools.constants import API_KEY_ENV
from internvl_tools.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    (
        "errors",
        "settings",
        "validation",
        "requests",
        "batching",
        "app",
        "cli",
    ),
)
# API_KEY_ENV lives in internvl_tools.constants; the server package has always offered it too.
__all__ = ["API_KEY_ENV", *__all__]

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, eagerly
    from internvl_tools.server.app import *  # noqa: F403
    from internvl_tools.server.batching import *  # noqa: F403
    from internvl_tools.server.cli import *  # noqa: F403
    from internvl_tools.server.errors import *  # noqa: F403
    from internvl_tools.server.requests import *  # noqa: F403
    from internvl_tools.server.settings import *  # noqa: F403
    from internvl_tools.server.validation import *  # noqa: F403
