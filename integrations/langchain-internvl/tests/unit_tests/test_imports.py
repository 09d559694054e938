import langchain_internvl

EXPECTED_ALL = [
    "ChatInternVL",
    "InternVLGroundingTool",
    "InternVLOCRTool",
    "InternVLPDFLoader",
    "InternVLVisionTool",
    "UnsupportedContentError",
    "__version__",
]


def test_all_imports() -> None:
    assert sorted(langchain_internvl.__all__) == sorted(EXPECTED_ALL)


def test_version_is_a_string() -> None:
    assert isinstance(langchain_internvl.__version__, str) and langchain_internvl.__version__[0].isdigit()


def test_import_stays_light() -> None:
    import subprocess
    import sys

    code = "import sys, langchain_internvl; print('torch' in sys.modules or 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
