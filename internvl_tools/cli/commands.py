"""The ``internvl-tools`` commands: ``ask``, ``ground``, ``ocr``, ``info``; ``serve`` and ``mcp`` handed to the servers.

Every command checks its inputs (files, PDF pages, passwords, output paths) before any weights load, prints one
clear line on failure and exits with a code that tells scripts what went wrong (see :data:`EXIT_CODES`).

>>> main(["info", "--help"])  # doctest: +SKIP
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

from internvl_tools.cli.exits import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PAGES_FAILED,
    Stage,
    exit_code_for,
)
from internvl_tools.cli.parser import MODEL_ENV, PROG, build_parser
from internvl_tools.constants import DEFAULT_MODEL, MAX_TILES_LIMIT
from internvl_tools.errors import (
    ConfigError,
    DependencyMissingError,
    GenerationError,
    InternVLError,
    MediaNotFoundError,
)

__all__ = ["main"]


def _one_line(exc: BaseException) -> str:
    from internvl_tools.errors import PasswordError

    text = str(exc) if isinstance(exc, InternVLError) else f"{type(exc).__name__}: {exc}"
    if isinstance(exc, PasswordError):
        text += " On the command line: --password PASSWORD."
    return " ".join(text.split()) or type(exc).__name__


def _err(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


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


def _engine(args: argparse.Namespace, stage: Stage) -> Any:
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


def _cmd_ask(args: argparse.Namespace, stage: Stage) -> int:
    if not args.question.strip():
        raise ConfigError("QUESTION is empty; ask something, e.g. 'What is in this picture?'.")
    generation = _generation(args)
    image = _load_visual(args, "IMAGE_OR_PDF")
    engine = _engine(args, stage)
    messages = [
        {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": args.question}]}
    ]
    if args.json:
        result = engine.chat(messages, **generation)
        if result.finish_reason == "error":
            raise GenerationError(result.error or "generation failed")
        _print_json(
            {
                "model": result.model,
                "answer": result.text,
                "finish_reason": result.finish_reason,
                "usage": result.usage.model_dump(),
            }
        )
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


def _cmd_ground(args: argparse.Namespace, stage: Stage) -> int:
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


def _cmd_ocr_ray(args: argparse.Namespace, stage: Stage) -> int:
    """``ocr INPUT... --ray [ADDRESS] --out DIR``: the corpus on Ray Data (see :func:`internvl_tools.corpus.ingest`)."""
    import ray

    from internvl_tools.corpus.run import ingest
    from internvl_tools.engines.settings import EngineSettings

    if args.out is None:
        raise ConfigError("--ray needs --out DIR: one file per document goes there (and a rerun resumes from it).")
    if args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}.")
    settings = EngineSettings(model=_model_name(args), device=args.device, dtype=args.dtype, max_tiles=args.max_tiles)
    if not ray.is_initialized():
        ray.init(address=args.ray or None, include_dashboard=False, log_to_driver=False, configure_logging=False)
    stage.name = "generate"
    summary = ingest(
        args.input,
        args.out,
        model=settings,
        workers=args.workers,
        task=args.task,
        pages=args.pages,
        password=args.password,
        dpi=args.dpi,
        batch_size=args.batch_size,
        progress=args.progress,
        **_generation(args),
    )
    if args.json:
        _print_json(summary.model_dump(mode="json"))
    _err(str(summary))
    for source, why in summary.failures.items():
        _err(f"failed: {source}: {why}")
    return EXIT_PAGES_FAILED if summary.failures else EXIT_OK


def _cmd_ocr(args: argparse.Namespace, stage: Stage) -> int:
    if args.ray is not None:
        return _cmd_ocr_ray(args, stage)
    if len(args.input) > 1:
        raise ConfigError("several inputs need --ray (one corpus run); without it, ocr reads one document.")
    args.input = args.input[0]
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
        str(path),
        task=args.task,
        pages=args.pages,
        password=args.password,
        dpi=args.dpi,
        batch_size=args.batch_size,
        progress=args.progress,
        resume_from=records if args.resume else None,
        **generation,
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


def _cmd_info(args: argparse.Namespace, stage: Stage) -> int:
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
            print(
                f"usage: {PROG} serve MODEL [options]\n\nRun an OpenAI-compatible HTTP server for MODEL. The "
                "server is not part of this installation; install 'internvl-tools[server]'."
            )
            return EXIT_OK
        raise DependencyMissingError(
            "the server is not available in this installation: pip install 'internvl-tools[server]'"
        ) from exc
    return int(server.main(argv) or 0)


def _mcp(argv: list[str]) -> int:
    """Hand everything after ``mcp`` to :func:`internvl_tools.mcp.main` (the SDK is imported only when serving)."""
    from internvl_tools.mcp.cli import main as mcp_main

    return int(mcp_main(argv) or 0)


_COMMANDS = {"ask": _cmd_ask, "ground": _cmd_ground, "ocr": _cmd_ocr, "info": _cmd_info}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``); returns the exit code.

    >>> main(["--version"])  # doctest: +SKIP
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list
    if args_list[:1] in (["serve"], ["mcp"]):
        command = args_list[0]
        try:
            return (_serve if command == "serve" else _mcp)(args_list[1:])
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
        except Exception as exc:
            if debug:
                traceback.print_exc()
            _err(f"{command}: error: {_one_line(exc)}")
            return exit_code_for(exc, "load")
    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:  # --help / --version exit 0, usage errors 2
        return int(exc.code or 0) if isinstance(exc.code, int) else EXIT_BAD_INPUT
    stage = Stage()
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
