"""The ``internvl-tools`` command line: ``ask``, ``ground``, ``ocr``, ``info`` and ``serve``.

Every command checks its inputs (files, PDF pages, passwords, output paths) before any weights load, prints one
clear line on failure and exits with a code that tells scripts what went wrong (see :data:`EXIT_CODES`).

>>> main(["info", "--help"])  # doctest: +SKIP
>>> exit_code_for(FileNotFoundError("x"), stage="input")
2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from internvl_tools import __version__
from internvl_tools.constants import DEFAULT_MODEL, MAX_TILES_LIMIT
from internvl_tools.errors import (
    ConfigError,
    ContextLengthError,
    DependencyMissingError,
    GenerationError,
    InternVLError,
    MediaError,
    MediaNotFoundError,
    ModelLoadError,
    StructuredOutputError,
    TemplateError,
)

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_CODES",
    "EXIT_DEPENDENCY",
    "EXIT_GENERATION",
    "EXIT_INTERRUPTED",
    "EXIT_LOAD",
    "EXIT_OK",
    "EXIT_PAGES_FAILED",
    "build_parser",
    "exit_code_for",
    "main",
]

PROG = "internvl-tools"
MODEL_ENV = "INTERNVL_TOOLS_MODEL"

EXIT_OK = 0
EXIT_PAGES_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_LOAD = 3
EXIT_GENERATION = 4
EXIT_DEPENDENCY = 5
EXIT_INTERRUPTED = 130

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "ok",
    EXIT_PAGES_FAILED: "ocr: some pages failed (the others are written; rerun with --resume to retry them)",
    EXIT_BAD_INPUT: "usage error or bad input: missing/unreadable file, encrypted PDF without --password, bad "
    "--pages, unknown option value, prompt too long for the context window",
    EXIT_LOAD: "the model could not be loaded: unknown name, not an InternVL checkpoint, hub unreachable, "
    "broken weights",
    EXIT_GENERATION: "generation failed inside the model",
    EXIT_DEPENDENCY: "an optional dependency is missing (the message names the pip extra)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}

# Errors that mean "fix what you typed", whatever stage they surface in. ContextLengthError belongs here: the
# prompt is refused before generation, and the fix is a smaller --max-tiles / --max-new-tokens, not a retry.
_BAD_INPUT_ERRORS: tuple[type[BaseException], ...] = (MediaError, ConfigError, TemplateError, ContextLengthError)


def _epilog(examples: str) -> str:
    codes = "\n".join(f"  {code:<3} {text}" for code, text in EXIT_CODES.items())
    return f"examples:\n{examples}\n\nexit codes:\n{codes}"


# --------------------------------------------------------------------------------------------------- errors


class _Stage:
    """Which step a command is in; an unexpected exception is blamed on it (``input``, ``load``, ``generate``)."""

    def __init__(self) -> None:
        self.name = "input"


def exit_code_for(exc: BaseException, stage: str = "generate") -> int:
    """The exit code for ``exc`` raised while a command was in ``stage`` (``input``, ``load`` or ``generate``).

    Typed errors decide by type; anything else raised while loading is a load failure, while reading inputs bad
    input, and while generating a generation failure.

    >>> from internvl_tools.errors import PasswordError, ModelLoadError
    >>> exit_code_for(PasswordError("encrypted")), exit_code_for(ModelLoadError("x")), exit_code_for(RuntimeError())
    (2, 3, 4)
    """
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, DependencyMissingError):
        return EXIT_DEPENDENCY
    if isinstance(exc, ModelLoadError) or stage == "load":
        return EXIT_LOAD
    if isinstance(exc, (GenerationError, StructuredOutputError)):
        return EXIT_GENERATION
    if isinstance(exc, _BAD_INPUT_ERRORS):
        return EXIT_BAD_INPUT
    if stage == "input" and isinstance(exc, (OSError, ValueError, TypeError)):
        return EXIT_BAD_INPUT
    return EXIT_BAD_INPUT if stage == "input" and isinstance(exc, InternVLError) else EXIT_GENERATION


def _one_line(exc: BaseException) -> str:
    from internvl_tools.errors import PasswordError

    text = str(exc) if isinstance(exc, InternVLError) else f"{type(exc).__name__}: {exc}"
    if isinstance(exc, PasswordError):
        text += " On the command line: --password PASSWORD."
    return " ".join(text.split()) or type(exc).__name__


def _err(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------- parsing


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
    group.add_argument("--dtype", default="auto", help="auto (bf16 on CUDA, fp16 on MPS, fp32 on CPU), float32, "
                       "bfloat16, float16")
    group.add_argument("--max-tiles", type=int, default=None, metavar="N",
                       help=f"448-px tiles per image, 1-{MAX_TILES_LIMIT} (default: the checkpoint's max_dynamic_patch)")
    group.add_argument("--max-new-tokens", type=int, default=None, metavar="N", help="cap on generated tokens")
    group.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    group.add_argument("--debug", action="store_true", help="show tracebacks and library logs")
    return common


def _document_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--password", default=None, help="password of an encrypted PDF")
    parser.add_argument("--dpi", type=float, default=None,
                        help="render PDF pages at this resolution (default: 1792 px on the longest side, what a "
                        "12-tile grid of 448-px tiles uses; ocr: sized to the model's tile grid)")


def _page_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--page", type=int, default=None, metavar="N", help="1-based page of a PDF or TIFF "
                        "(default 1)")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``internvl-tools`` (``serve`` is listed here but parsed by the server itself)."""
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="InternVL vision-language models from the command line: ask about images and PDF pages, find "
        "objects, OCR whole PDFs, inspect checkpoints, serve an OpenAI-compatible API.",
        formatter_class=fmt,
        epilog=_epilog(
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
        "ask", parents=[common], formatter_class=fmt, help="answer a question about an image or a PDF page",
        description="Answer a question about an image or one page of a PDF; the answer streams to the terminal.",
        epilog=_epilog(
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
        "ground", parents=[common], formatter_class=fmt, help="find a phrase in an image: boxes as JSON",
        description="Locate a phrase in an image with InternVL's grounding prompt. Prints the boxes (pixels of the "
        "image) as JSON on stdout; --out writes the picture with the boxes drawn.",
        epilog=_epilog(
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
        "ocr", parents=[common], formatter_class=fmt, help="transcribe the pages of a PDF to JSONL or Markdown",
        description="Transcribe the pages of a PDF (or TIFF) page by page; a failed page is recorded and the run "
        "carries on. --out FILE.jsonl writes one JSON line per page as it finishes; --out FILE.md writes one "
        "Markdown document. Without --out, pages go to stdout (Markdown, or JSONL with --json). A summary goes to "
        "stderr (to stdout as JSON with --json and --out). Exit code 1 when any page failed.",
        epilog=_epilog(
            f"  {PROG} ocr scan.pdf --out pages.jsonl\n"
            f"  {PROG} ocr scan.pdf --out pages.jsonl --resume      # rerun: skips pages already done\n"
            f"  {PROG} ocr scan.pdf --out doc.md --pages 1-5,9\n"
            f"  {PROG} ocr scan.pdf --out doc.md --resume          # keeps page records in doc.md.jsonl\n"
            f"  {PROG} ocr charts.pdf --task chart --json > charts.jsonl"
        ),
    )
    ocr.add_argument("input", metavar="PDF", help="a PDF, multi-page TIFF or image")
    ocr.add_argument("--out", default=None, metavar="FILE.jsonl|FILE.md", help="output file (.jsonl or .md)")
    ocr.add_argument("--pages", default=None, metavar="SPEC", help="1-based selection, e.g. 1-5 or 1-3,7 or 10-")
    ocr.add_argument("--resume", action="store_true",
                     help="skip pages that already succeeded in the output (its JSONL; for .md: FILE.md.jsonl)")
    ocr.add_argument("--task", choices=("ocr", "chart", "grounded_ocr"), default="ocr", help="what to read")
    ocr.add_argument("--batch-size", type=int, default=4, metavar="N", help="pages per batched generate")
    progress = ocr.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None,
                          help="show a progress bar (default: when stderr is a terminal)")
    progress.add_argument("--no-progress", dest="progress", action="store_false")
    _document_options(ocr)

    info = sub.add_parser(
        "info", parents=[common], formatter_class=fmt, help="describe a checkpoint without loading weights",
        description="Family, template, tiles, context and the device/dtype that would be used, read from the "
        "checkpoint's config files only (for a hub id, config.json is fetched or read from the cache; no weights).",
        epilog=_epilog(
            f"  {PROG} info {DEFAULT_MODEL}\n"
            f"  {PROG} info ./checkpoints/my-internvl --json\n"
            f"  {PROG} info tiny --device cpu --dtype bfloat16"
        ),
    )
    info.add_argument("model_arg", nargs="?", default=None, metavar="MODEL",
                      help="hub id, local directory or 'tiny' (default: --model, then $" + MODEL_ENV + ")")

    sub.add_parser(
        "serve", add_help=False, help="run an OpenAI-compatible server (args go to the server; see serve --help)",
        description=f"{PROG} serve MODEL [options]: an OpenAI-compatible HTTP server (needs the 'server' extra).",
    )
    return parser


# ------------------------------------------------------------------------------------------------- helpers


def _model_name(args: argparse.Namespace) -> str:
    name = getattr(args, "model_arg", None) or args.model or os.environ.get(MODEL_ENV) or DEFAULT_MODEL
    if name == "tiny" or name.startswith("tiny-"):
        _err(f"warning: --model {name} is a tiny random checkpoint for tests; its answers are meaningless.")
    return name


def _quiet_libraries(debug: bool) -> None:
    if debug:
        import logging

        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
        return
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except Exception:  # transformers missing is reported by the load itself
        pass


def _check_input_file(path_text: str, what: str) -> Path:
    path = Path(path_text).expanduser()
    if not path.exists():
        raise MediaNotFoundError(f"{what} {path_text!r} does not exist; check the path.")
    if not path.is_file():
        raise MediaNotFoundError(f"{what} {path_text!r} is not a file.")
    return path


def _check_out_file(path_text: str, suffixes: Sequence[str] | None = None) -> Path:
    out = Path(path_text).expanduser()
    if out.is_dir():
        raise ConfigError(f"--out {path_text!r} is a directory; name a file.")
    if not out.parent.is_dir():
        raise ConfigError(f"--out {path_text!r}: the folder {str(out.parent)!r} does not exist; create it first.")
    if suffixes is not None and out.suffix.lower() not in suffixes:
        raise ConfigError(f"--out {path_text!r} must end in {' or '.join(suffixes)}.")
    return out


def _is_pdf(path: Path) -> bool:
    with open(path, "rb") as fh:
        return b"%PDF-" in fh.read(1024)


def _load_visual(args: argparse.Namespace, what: str) -> Any:
    """The picture to send: a PDF/TIFF page rendered with ``render_pages``, else the image decoded and checked."""
    path = _check_input_file(args.input, what)
    if args.page is not None and args.page < 1:
        raise ConfigError(f"--page {args.page}: pages are numbered from 1.")
    if _is_pdf(path) or args.page is not None:
        from internvl_tools.documents.render import render_pages
        from internvl_tools.errors import PageRenderError

        with render_pages(path, dpi=args.dpi, pages=[args.page or 1], password=args.password) as pages:
            page = next(iter(pages))
        if page.error is not None or page.image is None:
            raise PageRenderError(f"{args.input}: page {args.page or 1} could not be rendered: {page.error}")
        return page.image
    from internvl_tools.media.images import load_image

    return load_image(str(path))


def _engine(args: argparse.Namespace, stage: _Stage) -> Any:
    """Build the engine (bad options → exit 2) and load it now (failures → exit 3)."""
    from internvl_tools.checkpoints.device import resolve_device, resolve_dtype
    from internvl_tools.engines.settings import EngineSettings

    resolve_dtype(args.dtype, resolve_device(args.device))
    if args.max_tiles is not None and not 1 <= args.max_tiles <= MAX_TILES_LIMIT:
        raise ConfigError(f"--max-tiles must be between 1 and {MAX_TILES_LIMIT}, got {args.max_tiles}.")
    # The same settings (and field names) as LangChain's and LlamaIndex's: the user's own files, no URL fetching.
    settings = EngineSettings(model=_model_name(args), device=args.device, dtype=args.dtype, max_tiles=args.max_tiles)
    engine = settings.build_engine()
    stage.name = "load"
    _quiet_libraries(args.debug)
    engine.load()
    stage.name = "generate"
    return engine


def _generation(args: argparse.Namespace) -> dict[str, Any]:
    if args.max_new_tokens is None:
        return {}
    if args.max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}.")
    return {"max_new_tokens": args.max_new_tokens}


def _print_json(data: Any, *, pretty: bool = False) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2 if pretty else None, default=str), flush=True)


# ------------------------------------------------------------------------------------------------ commands


def _cmd_ask(args: argparse.Namespace, stage: _Stage) -> int:
    if not args.question.strip():
        raise ConfigError("QUESTION is empty; ask something, e.g. 'What is in this picture?'.")
    generation = _generation(args)
    image = _load_visual(args, "IMAGE_OR_PDF")
    engine = _engine(args, stage)
    messages = [{"role": "user", "content": [{"type": "image", "image": image},
                                             {"type": "text", "text": args.question}]}]
    if args.json:
        result = engine.chat(messages, **generation)
        if result.finish_reason == "error":
            raise GenerationError(result.error or "generation failed")
        _print_json({"model": result.model, "answer": result.text, "finish_reason": result.finish_reason,
                     "usage": result.usage.model_dump()})
        return EXIT_OK
    out = sys.stdout
    wrote = False
    try:
        for delta in engine.stream(messages, **generation):
            out.write(delta)
            out.flush()
            wrote = True
    finally:
        if wrote:
            out.write("\n")
            out.flush()
    if not wrote:
        out.write("\n")
    return EXIT_OK


def _cmd_ground(args: argparse.Namespace, stage: _Stage) -> int:
    if not args.phrase.strip():
        raise ConfigError("PHRASE is empty; name what to find, e.g. 'the red car'.")
    generation = _generation(args)
    out = None
    if args.out is not None:
        from PIL import Image

        out = _check_out_file(args.out, sorted(Image.registered_extensions()))
    image = _load_visual(args, "IMAGE")
    engine = _engine(args, stage)
    result = engine.ground(image, args.phrase, **generation)
    payload = {"phrase": args.phrase, **result.model_dump(mode="json")}
    _print_json(payload, pretty=not args.json)
    if not result.boxes:
        _err(f"warning: no box found for {args.phrase!r}.")
    if out is not None:
        stage.name = "input"  # a write failure is about the --out path, not the model
        result.draw().save(out)
        if not args.json:
            _err(f"annotated picture written to {out}")
    return EXIT_OK


def _cmd_ocr(args: argparse.Namespace, stage: _Stage) -> int:
    from internvl_tools.documents.output import load_results, to_markdown, write_jsonl, write_markdown
    from internvl_tools.documents.sources import open_source, page_count, parse_pages

    generation = _generation(args)
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}.")
    out = _check_out_file(args.out, (".jsonl", ".md", ".markdown")) if args.out else None
    if args.resume and out is None:
        raise ConfigError("--resume needs --out FILE.jsonl (or FILE.md): the file records which pages are done.")
    path = _check_input_file(args.input, "PDF")
    # Open, count and select now so an encrypted PDF or a bad --pages fails before the model loads.
    source = open_source(path)
    parse_pages(args.pages, page_count(source, args.password))
    engine = _engine(args, stage)

    records = None
    if out is not None:
        records = out if out.suffix.lower() == ".jsonl" else (Path(f"{out}.jsonl") if args.resume else None)
    stream = engine.read_pdf(
        str(path), task=args.task, pages=args.pages, password=args.password, dpi=args.dpi,
        batch_size=args.batch_size, progress=args.progress,
        resume_from=records if args.resume else None, **generation,
    )
    with stream:
        if out is None:
            for result in stream:
                if args.json:
                    print(result.model_dump_json(), flush=True)
                else:
                    print(to_markdown([result]), flush=True)
        elif records is not None:
            write_jsonl(stream, records, append=args.resume)
            if records != out:
                write_markdown(load_results(records, task=args.task), out)
        else:
            write_markdown(list(stream), out)
    summary = stream.summary
    if args.json and out is not None:
        _print_json(summary.model_dump(mode="json"))
    else:
        _err(str(summary))
    if summary.failed:
        hint = "rerun with --resume to retry only those" if out is not None else "see the error markers above"
        _err(f"{summary.failed} page(s) failed; {hint}.")
        return EXIT_PAGES_FAILED
    return EXIT_OK


def _cmd_info(args: argparse.Namespace, stage: _Stage) -> int:
    from internvl_tools.checkpoints.device import resolve_device, resolve_dtype
    from internvl_tools.engines.summary import describe_checkpoint

    if args.max_tiles is not None and not 1 <= args.max_tiles <= MAX_TILES_LIMIT:
        raise ConfigError(f"--max-tiles must be between 1 and {MAX_TILES_LIMIT}, got {args.max_tiles}.")
    resolve_dtype(args.dtype, resolve_device(args.device))  # bad --device/--dtype: exit 2, before any download
    stage.name = "load"
    data = describe_checkpoint(_model_name(args), device=args.device, dtype=args.dtype, max_tiles=args.max_tiles)
    stage.name = "input"
    if args.json:
        _print_json(data)
    else:
        width = max(map(len, data))
        for key, value in data.items():
            print(f"{key:<{width}}  {'-' if value is None else value}")
    return EXIT_OK


def _serve(argv: list[str]) -> int:
    """Hand everything after ``serve`` to :func:`internvl_tools.server.main`, imported only now."""
    import importlib

    try:
        server = importlib.import_module("internvl_tools.server")
    except ModuleNotFoundError as exc:
        if exc.name not in ("internvl_tools.server",):
            raise DependencyMissingError(
                f"the server needs {exc.name!r}: pip install 'internvl-tools[server]'"
            ) from exc
        if any(a in ("-h", "--help") for a in argv):
            print(f"usage: {PROG} serve MODEL [options]\n\nRun an OpenAI-compatible HTTP server for MODEL. The "
                  "server is not part of this installation; install 'internvl-tools[server]'.")
            return EXIT_OK
        raise DependencyMissingError(
            "the server is not available in this installation: pip install 'internvl-tools[server]'"
        ) from exc
    return int(server.main(argv) or 0)


_COMMANDS = {"ask": _cmd_ask, "ground": _cmd_ground, "ocr": _cmd_ocr, "info": _cmd_info}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``); returns the exit code.

    >>> main(["--version"])  # doctest: +SKIP
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list
    if args_list[:1] == ["serve"]:
        try:
            return _serve(args_list[1:])
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
        except Exception as exc:
            if debug:
                traceback.print_exc()
            _err(f"serve: error: {_one_line(exc)}")
            return exit_code_for(exc, "load")
    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:  # --help / --version exit 0, usage errors 2
        return int(exc.code or 0) if isinstance(exc.code, int) else EXIT_BAD_INPUT
    stage = _Stage()
    try:
        return _COMMANDS[args.command](args, stage)
    except KeyboardInterrupt:
        _err("interrupted" + ("; rerun with --resume to continue" if args.command == "ocr" else ""))
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. piped into `head`: not an error of ours
        return EXIT_OK
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        code = exit_code_for(exc, stage.name)
        hint = "" if args.debug or isinstance(exc, InternVLError) else " (run with --debug for the traceback)"
        _err(f"{args.command}: error: {_one_line(exc)}{hint}")
        return code
