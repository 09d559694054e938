"""The package's promises about itself: cheap import, one error hierarchy, a public API that resolves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import internvl_tools
from internvl_tools import errors

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "pypdfium2", "decord", "av", "torchvision", "xgrammar", "ray")


def test_import_does_not_load_heavy_modules() -> None:
    code = (
        "import sys, internvl_tools, internvl_tools.errors, internvl_tools.constants, internvl_tools.documents;"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_loading_images_does_not_load_the_url_fetcher_or_torch() -> None:
    """The fetcher (httpx) loads with the first URL, torch with the first tensor; image-only callers pay for neither."""
    code = (
        "import io, sys; from PIL import Image; from internvl_tools.media.images import load_image;"
        "buf = io.BytesIO(); Image.new('RGB', (4, 4)).save(buf, 'PNG'); load_image(buf.getvalue());"
        "print([m for m in ('httpx', 'httpcore', 'torch') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


@pytest.mark.parametrize("name", internvl_tools.__all__)
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(internvl_tools, name) is not None


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        internvl_tools.nope  # noqa: B018


@pytest.mark.parametrize("name", errors.__all__)
def test_every_error_derives_from_the_root(name: str) -> None:
    cls = getattr(errors, name)
    assert issubclass(cls, errors.InternVLError)


def test_bad_input_errors_are_value_errors_and_policy_errors_are_permission_errors() -> None:
    assert issubclass(errors.ImageDecodeError, ValueError)
    assert issubclass(errors.URLBlockedError, PermissionError)
    assert issubclass(errors.ContextLengthError, ValueError)


MODULES = sorted(
    ".".join(p.relative_to(ROOT).with_suffix("").parts)
    for p in (ROOT / "internvl_tools").rglob("*.py")
    if p.name != "__main__.py"
)


def test_every_module_imports_first_in_a_fresh_interpreter() -> None:
    # Modules that re-export each other (prompts/families, grounding/grounding_records) must not depend on which
    # one a user imports first: each is imported alone, in its own interpreter.
    code = (
        "import subprocess, sys\n"
        "bad = []\n"
        "for name in sys.argv[1:]:\n"
        "    p = subprocess.run([sys.executable, '-c', f'import {name}'], capture_output=True, text=True)\n"
        "    if p.returncode: bad.append((name, p.stderr.strip().splitlines()[-1:]))\n"
        "print(bad)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, *MODULES], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr
