"""Media: getting user bytes into memory safely, under a :class:`MediaPolicy`.

Modules, bottom up (each imports only those before it): ``policy`` (:class:`MediaPolicy`, naming inputs in
errors), ``paths`` (confined paths), ``fetch`` (the SSRF-guarded, capped downloader), ``decode`` (Pillow with only
the decoders we chose, pixels to RGB; ``pixels`` holds its torchvision route into the tiler's tensor), ``images``
(:func:`load_image` and :func:`load_pixels` from any source, encoding) and ``video`` (the reference frame sampling).
"""

from typing import TYPE_CHECKING

from internvl_tools.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    (
        "policy",
        "paths",
        "fetch",
        "decode",
        "images",
        "video",
    ),
)

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, eagerly
    from internvl_tools.media.decode import *  # noqa: F403
    from internvl_tools.media.fetch import *  # noqa: F403
    from internvl_tools.media.images import *  # noqa: F403
    from internvl_tools.media.paths import *  # noqa: F403
    from internvl_tools.media.policy import *  # noqa: F403
    from internvl_tools.media.video import *  # noqa: F403
