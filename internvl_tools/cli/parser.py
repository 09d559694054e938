"""The argparse parser of ``internvl-tools``: commands, options, examples and the exit-code table in ``--help``."""

from __future__ import annotations

import argparse

from internvl_tools import __version__
from internvl_tools.cli.exits import EXIT_CODES
from internvl_tools.constants import DEFAULT_MODEL, MAX_TILES_LIMIT

__all__ = ["MODEL_ENV", "PROG", "build_parser"]

PROG = "internvl-tools"
MODEL_ENV = "INTERNVL_TOOLS_MODEL"


def epilog(examples: str) -> str:
    codes = "\n".join(f"  {code:<3} {text}" for code, text in EXIT_CODES.items())
    return f"examples:\n{examples}\n\nexit codes:\n{codes}"


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("common options")
    group.add_argument(
        "--model",
        default=None,
        help=f"checkpoint: hub id, local directory, or 'tiny' (random offline model, meaningless answers). "
        f"Default: ${MODEL_ENV} or {DEFAULT_MODEL}",
    )
    group.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    group.add_argument(
        "--dtype", default="auto", help="auto (bf16 on CUDA, fp16 on MPS, fp32 on CPU), float32, bfloat16, float16"
    )
    group.add_argument(
        "--max-tiles",
        type=int,
        default=None,
        metavar="N",
        help=f"448-px tiles per image, 1-{MAX_TILES_LIMIT} (default: the checkpoint's max_dynamic_patch)",
    )
    group.add_argument("--max-new-tokens", type=int, default=None, metavar="N", help="cap on generated tokens")
    group.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    group.add_argument("--debug", action="store_true", help="show tracebacks and library logs")
    return common


def _document_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--password", default=None, help="password of an encrypted PDF")
    parser.add_argument(
        "--dpi",
        type=float,
        default=None,
        help="render PDF pages at this resolution (default: 1792 px on the longest side, what a "
        "12-tile grid of 448-px tiles uses; ocr: sized to the model's tile grid)",
    )


def _page_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--page", type=int, default=None, metavar="N", help="1-based page of a PDF or TIFF (default 1)")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``internvl-tools`` (``serve`` is listed here but parsed by the server itself)."""
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="InternVL vision-language models from the command line: ask about images and PDF pages, find "
        "objects, OCR whole PDFs, inspect checkpoints, serve an OpenAI-compatible API.",
        formatter_class=fmt,
        epilog=epilog(
            f"  {PROG} ask receipt.jpg 'What is the total?'\n"
            f"  {PROG} ask report.pdf --page 3 'Summarise this page.'\n"
            f"  {PROG} ground street.jpg 'the red car' --out annotated.png\n"
            f"  {PROG} ocr scan.pdf --out pages.jsonl --pages 1-5 --resume\n"
            f"  {PROG} info {DEFAULT_MODEL}\n"
            f"  {PROG} serve {DEFAULT_MODEL} --port 8000\n"
            f"  run '{PROG} COMMAND --help' for each command's options"
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = _common()

    ask = sub.add_parser(
        "ask",
        parents=[common],
        formatter_class=fmt,
        help="answer a question about an image or a PDF page",
        description="Answer a question about an image or one page of a PDF; the answer streams to the terminal.",
        epilog=epilog(
            f"  {PROG} ask photo.jpg 'What is in this picture?'\n"
            f"  {PROG} ask invoice.pdf --page 2 'What is the total?' --max-new-tokens 64\n"
            f"  {PROG} ask chart.png 'Read the bars' --json     # answer, usage and finish reason as JSON\n"
            f"  {PROG} ask photo.jpg 'Hi' --model tiny          # offline smoke test (random answers)"
        ),
    )
    ask.add_argument("input", metavar="IMAGE_OR_PDF", help="an image file, a PDF or a multi-page TIFF")
    ask.add_argument("question", metavar="QUESTION")
    _page_option(ask)
    _document_options(ask)

    ground = sub.add_parser(
        "ground",
        parents=[common],
        formatter_class=fmt,
        help="find a phrase in an image: boxes as JSON",
        description="Locate a phrase in an image with InternVL's grounding prompt. Prints the boxes (pixels of the "
        "image) as JSON on stdout; --out writes the picture with the boxes drawn.",
        epilog=epilog(
            f"  {PROG} ground street.jpg 'the red car' --out annotated.png\n"
            f"  {PROG} ground street.jpg 'the red car' --json | jq '.objects[].boxes'\n"
            f"  {PROG} ground form.pdf --page 2 'the signature field' --out sig.png"
        ),
    )
    ground.add_argument("input", metavar="IMAGE", help="an image file (or a PDF with --page)")
    ground.add_argument("phrase", metavar="PHRASE")
    ground.add_argument("--out", default=None, metavar="FILE.png", help="write the annotated picture here")
    _page_option(ground)
    _document_options(ground)

    ocr = sub.add_parser(
        "ocr",
        parents=[common],
        formatter_class=fmt,
        help="transcribe the pages of a PDF to JSONL or Markdown",
        description="Transcribe the pages of a PDF (or TIFF) page by page; a failed page is recorded and the run "
        "carries on. --out FILE.jsonl writes one JSON line per page as it finishes; --out FILE.md writes one "
        "Markdown document. Without --out, pages go to stdout (Markdown, or JSONL with --json). A summary goes to "
        "stderr (to stdout as JSON with --json and --out). Exit code 1 when any page failed.",
        epilog=epilog(
            f"  {PROG} ocr scan.pdf --out pages.jsonl\n"
            f"  {PROG} ocr scan.pdf --out pages.jsonl --resume      # rerun: skips pages already done\n"
            f"  {PROG} ocr scan.pdf --out doc.md --pages 1-5,9\n"
            f"  {PROG} ocr scan.pdf --out doc.md --resume          # keeps page records in doc.md.jsonl\n"
            f"  {PROG} ocr charts.pdf --task chart --json > charts.jsonl"
        ),
    )
    ocr.add_argument(
        "input",
        metavar="PDF",
        nargs="+",
        help="a PDF, TIFF or image; with --ray: files, directories, globs",
    )
    ocr.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="read a whole corpus on Ray Data (a local instance, or the cluster at ADDRESS); --out is a folder",
    )
    ocr.add_argument("--workers", type=int, default=1, metavar="N", help="inference actors with --ray (default 1)")
    ocr.add_argument("--out", default=None, metavar="FILE.jsonl|FILE.md", help="output file (.jsonl or .md)")
    ocr.add_argument("--pages", default=None, metavar="SPEC", help="1-based selection, e.g. 1-5 or 1-3,7 or 10-")
    ocr.add_argument(
        "--resume",
        action="store_true",
        help="skip pages that already succeeded in the output (its JSONL; for .md: FILE.md.jsonl)",
    )
    ocr.add_argument(
        "--task",
        choices=("ocr", "chart", "grounded_ocr", "layout"),
        default="ocr",
        help="what to read (layout: blocks with kind, reading order and boxes in the JSONL records; Markdown "
        "output assembles each page from its blocks)",
    )
    ocr.add_argument("--batch-size", type=int, default=4, metavar="N", help="pages per batched generate")
    progress = ocr.add_mutually_exclusive_group()
    progress.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help="show a progress bar (default: when stderr is a terminal)",
    )
    progress.add_argument("--no-progress", dest="progress", action="store_false")
    _document_options(ocr)

    info = sub.add_parser(
        "info",
        parents=[common],
        formatter_class=fmt,
        help="describe a checkpoint without loading weights",
        description="Family, template, tiles, context and the device/dtype that would be used, read from the "
        "checkpoint's config files only (for a hub id, config.json is fetched or read from the cache; no weights).",
        epilog=epilog(
            f"  {PROG} info {DEFAULT_MODEL}\n"
            f"  {PROG} info ./checkpoints/my-internvl --json\n"
            f"  {PROG} info tiny --device cpu --dtype bfloat16"
        ),
    )
    info.add_argument(
        "model_arg",
        nargs="?",
        default=None,
        metavar="MODEL",
        help="hub id, local directory or 'tiny' (default: --model, then $" + MODEL_ENV + ")",
    )

    sub.add_parser(
        "serve",
        add_help=False,
        help="run an OpenAI-compatible server (args go to the server; see serve --help)",
        description=f"{PROG} serve MODEL [options]: an OpenAI-compatible HTTP server (needs the 'server' extra).",
    )
    sub.add_parser(
        "mcp",
        add_help=False,
        help="serve the vision and document tools over MCP (stdio, or --http; see mcp --help)",
        description=f"{PROG} mcp MODEL [options]: a Model Context Protocol server (needs the 'mcp' extra).",
    )
    return parser
