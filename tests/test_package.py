"""The package's promises about itself: cheap import, one error hierarchy, a public API that resolves."""

from __future__ import annotations

import subprocess
import sys

import pytest

import internvl_tools
from internvl_tools import errors

HEAVY = ("torch", "transformers", "pypdfium2", "decord", "av", "torchvision", "xgrammar")


def test_import_does_not_load_heavy_modules() -> None:
    code = (
        "import sys, internvl_tools, internvl_tools.errors, internvl_tools.constants;"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
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
