"""``read_pdf``: run a task over every selected page, batching generation while the next pages render.

>>> from internvl_tools import InternVL
>>> stream = read_pdf(InternVL("tiny"), "scan.pdf", task="ocr", progress=False)  # doctest: +SKIP
>>> for page in stream: print(page.page, page.ok)                                  # doctest: +SKIP
>>> print(stream.summary)                                                          # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterator
from typing import Any

from internvl_tools.documents.blocks import LAYOUT_PROMPT, parse_layout
from internvl_tools.documents.failures import answer_failure, error_fields, exception_fields, page_fields
from internvl_tools.documents.models import DocumentSummary, PageResult
from internvl_tools.documents.options import ReadOptions
from internvl_tools.documents.output import completed_pages
from internvl_tools.documents.render import RenderedPage, render_pages
from internvl_tools.documents.sizing import DEFAULT_PAGE_MEMORY_MB, DEFAULT_PAGE_TIMEOUT_S, Backend, tile_grid_for
from internvl_tools.documents.sources import DocumentSource, PageSpec, open_source, page_count, parse_pages
from internvl_tools.documents.tasks import (
    CHART_PROMPT,
    OCR_PROMPT,
    RELEVANCE_PROMPT,
    REPETITION_RETRY,
    SCHEMA_PROMPT,
    parse_chart_answer,
)
from internvl_tools.errors import ConfigError, RepetitionError, StructuredOutputError
from internvl_tools.generation.structured import json_instruction, json_schema_of, validate_output
from internvl_tools.grounding.parser import parse_grounding
from internvl_tools.grounding.prompts import grounded_ocr_prompt
from internvl_tools.media.policy import MediaPolicy

__all__ = ["PageStream", "read_pdf", "read_rendered"]

log = logging.getLogger("internvl_tools.documents")

_WORD = re.compile(r"\w{3,}", re.UNICODE)


class PageStream(Iterator[PageResult]):
    """The iterator :func:`read_pdf` returns: yields :class:`PageResult` in page order; ``summary`` counts them.

    ``summary`` is live while iterating and final (``summary.finished``) once the stream is exhausted. ``close()``
    (or leaving a ``with`` block) stops rendering and reaps the worker at once. ``resume_from`` is the record file
    the run resumed from (or None) and ``resumed_pages`` the pages it skips because they are done there.
    """

    def __init__(
        self,
        gen: Iterator[PageResult],
        summary: DocumentSummary,
        resume_from: str | os.PathLike | None = None,
        resumed_pages: frozenset[int] = frozenset(),
    ) -> None:
        self._gen = gen
        self.summary = summary
        self.resume_from = resume_from
        self.resumed_pages = resumed_pages

    def __iter__(self) -> PageStream:
        return self

    def __next__(self) -> PageResult:
        return next(self._gen)

    def close(self) -> None:
        self._gen.close()  # type: ignore[attr-defined]

    def __enter__(self) -> PageStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _user(image: Any, text: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": text}]}]


def _score(question: str, text: str) -> float:
    """Share of the question's words (3+ letters) found in the page's text layer."""
    wanted = {w.lower() for w in _WORD.findall(question)}
    if not wanted:
        return 0.0
    have = {w.lower() for w in _WORD.findall(text)}
    return len(wanted & have) / len(wanted)


def read_pdf(
    engine: Any,
    source: Any,
    *,
    task: Any = "ocr",
    question: str | None = None,
    pages: PageSpec = None,
    dpi: float | None = None,
    longest_side: int | None = None,
    password: str | None = None,
    batch_size: int = 4,
    progress: bool | None = None,
    resume_from: str | os.PathLike | None = None,
    max_new_tokens: int | None = None,
    top_pages: int | None = None,
    backend: Backend = "auto",
    prefetch: int | None = None,
    page_timeout: float | None = DEFAULT_PAGE_TIMEOUT_S,
    page_memory_mb: int | None = DEFAULT_PAGE_MEMORY_MB,
    options: ReadOptions | None = None,
    **generation: Any,
) -> PageStream:
    """Run a task over the pages of a PDF (or multi-page TIFF / image) and yield one :class:`PageResult` per page.

    Args:
        engine: an :class:`~internvl_tools.engine.InternVL` (``InternVL.read_pdf`` delegates here).
        task: ``"ocr"`` (Markdown transcription, tables as Markdown tables), ``"chart"`` (description plus the data
            as a table in ``data["table"]``), ``"grounded_ocr"`` (text with boxes in ``grounding``), or a pydantic
            model / JSON-schema dict for constrained extraction per page (``data``). Prompts: :mod:`.tasks`.
        question: answer this question on each page (task ``"qa"``); with ``top_pages=k`` only on the ``k`` most
            relevant pages (ranked by the text layer's overlap with the question, and for pages without a text
            layer by a short yes/no screening answer from the model). Those results carry ``relevance``.
        pages: 1-based selection such as ``"1-3,7"``.
        dpi / longest_side: render resolution; default: the longest side that fills the engine's tile grid
            per page (:func:`~internvl_tools.documents.sizing.grid_longest_side`; 1792 px for 448-px tiles, 12
            tiles and pages between 1:2 and 2:1, more for longer pages whose grid is taller).
        batch_size: pages per batched generate (``engine.batch``); the next pages render meanwhile.
        progress: a tqdm bar (pages, pages/s); default on in terminals and notebooks, off otherwise.
        resume_from: a JSONL file of an earlier run (see :mod:`.output`); pages that succeeded there for the same
            task are skipped (a missing file skips nothing). Failed pages are read again, and so is a page whose
            line is damaged (a warning names it). Append this run's results to the same file
            (``write_jsonl(..., append=True)``).
        max_new_tokens: default per task (:data:`~.tasks.DEFAULT_MAX_NEW_TOKENS`); other generation options pass
            through (greedy decoding unless you ask for sampling).
        backend / prefetch / page_timeout / page_memory_mb: how pages are rendered (see
            :func:`~internvl_tools.documents.render.render_pages`); ``prefetch`` defaults to ``max(2, batch_size)``.
            Images and the pixel cap follow the engine's ``media_policy``.
        options: all of the above as one :class:`~.options.ReadOptions` instead of keywords (not both).

    A page that fails to render or generate (including an engine answer with ``finish_reason="error"``, such as a
    prompt too long for the context) or whose answer the task cannot parse yields a result with ``ok`` false and a
    typed ``error`` / ``error_type`` (e.g. ``ContextLengthError`` with its numbers); it counts as failed in
    ``summary`` and the run continues. Bad options (:class:`~internvl_tools.errors.ConfigError`) and opening errors
    (missing file, encrypted without the right password, bad ``pages``) raise here, before any page is processed.
    """
    opts = ReadOptions.merge(
        options,
        generation,
        task=task,
        question=question,
        pages=pages,
        dpi=dpi,
        longest_side=longest_side,
        password=password,
        batch_size=batch_size,
        progress=progress,
        resume_from=resume_from,
        max_new_tokens=max_new_tokens,
        top_pages=top_pages,
        backend=backend,
        prefetch=prefetch,
        page_timeout=page_timeout,
        page_memory_mb=page_memory_mb,
    )
    policy = opts.policy if opts.policy is not None else getattr(engine, "media_policy", None)
    src = open_source(source)
    count = page_count(src, opts.password, policy=policy)
    selected = [i + 1 for i in parse_pages(opts.pages, count)] if count or opts.pages is not None else []
    done = completed_pages(opts.resume_from, opts.task_name) & set(selected)
    todo = [n for n in selected if n not in done]
    summary = DocumentSummary(source=src.name, task=opts.task_name, total=len(selected), skipped=len(done))
    run = _Run(engine, src, opts, summary, policy)
    return PageStream(run.iterate(todo), summary, opts.resume_from, frozenset(done))


def read_rendered(engine: Any, pages: list[RenderedPage], options: ReadOptions | None = None) -> list[PageResult]:
    """Run ``options``' task over pages already rendered (e.g. in another process) and return their results in order.

    The same inference as :func:`read_pdf` (batches of ``options.batch_size``, failure isolation, the repetition
    retry), so a page gives the same record either way; render the pages as ``read_pdf`` would (same ``dpi`` /
    ``longest_side`` / ``tile_grid``) for the same text. ``top_pages`` needs a whole document and is refused here.
    """
    opts = options if options is not None else ReadOptions()
    if opts.top_pages is not None:
        raise ConfigError("read_rendered cannot rank pages (top_pages); use read_pdf for top_pages.")
    policy = opts.policy if opts.policy is not None else getattr(engine, "media_policy", None)
    run = _Run(engine, None, opts, DocumentSummary(source="", task=opts.task_name, total=len(pages)), policy)
    step = opts.batch_size if isinstance(opts.task, str) else 1
    results: list[PageResult] = []
    for start in range(0, len(pages), step):
        results.extend(run._infer([(page, 0.0) for page in pages[start : start + step]]))
    return results


class _Run:
    """One read of one document: renders the pages, batches generation, turns answers into page results."""

    def __init__(
        self,
        engine: Any,
        src: DocumentSource | None,
        options: ReadOptions,
        summary: DocumentSummary,
        policy: MediaPolicy | None,
    ) -> None:
        self.engine, self.src, self.options, self.summary, self.policy = engine, src, options, summary, policy
        self.task, self.name, self.question = options.task, options.task_name, options.question
        self.batch_size = options.batch_size
        self.generation = options.generation_kwargs()
        self.show = options.show_progress
        self.model = getattr(engine, "model_name", None)
        # Each PDF page is rendered to fill the grid its shape gets with this engine's tiles.
        fixed = options.dpi is not None or options.longest_side is not None
        self.tile_grid = tile_grid_for(engine) if not fixed and src is not None and src.kind == "pdf" else None

    def _render(self, numbers: list[int], with_text: bool = False) -> Any:
        options = self.options
        return render_pages(
            self.src,
            options.dpi,
            options.longest_side,
            pages=numbers,
            password=options.password,
            backend=options.backend,
            prefetch=options.render_prefetch,
            with_text=with_text,
            tile_grid=self.tile_grid,
            policy=self.policy,
            page_timeout=options.page_timeout,
            page_memory_mb=options.page_memory_mb,
        )

    def iterate(self, todo: list[int]) -> Iterator[PageResult]:
        top_pages, show = self.options.top_pages, self.show
        start = time.perf_counter()
        bar = None
        relevance: dict[int, float] = {}
        try:
            if top_pages is not None and todo:
                relevance = self._rank(todo)
                keep = sorted(sorted(relevance, key=lambda n: (-relevance[n], n))[:top_pages])
                self.summary.skipped += len(todo) - len(keep)
                todo = keep
            if show and todo:
                from tqdm.auto import tqdm

                bar = tqdm(total=len(todo), unit="page", desc=f"{self.name} {os.path.basename(self.src.name)}")
            if not todo:
                self.summary.finished = True
                return
            stream = self._render(todo)
            try:
                # Failed renders wait in the batch too, so results come out in page order.
                batch: list[tuple[RenderedPage, float]] = []
                waited = time.perf_counter()
                for page in stream:
                    batch.append((page, time.perf_counter() - waited))
                    ready = sum(p.error is None for p, _ in batch)
                    if ready >= self.batch_size or (ready and not isinstance(self.task, str)):
                        for result in self._infer(batch):
                            yield self._record(result, relevance, bar)
                        batch = []
                    waited = time.perf_counter()
                for result in self._infer(batch):
                    yield self._record(result, relevance, bar)
            finally:
                stream.close()
            self.summary.finished = True
        finally:
            self.summary.elapsed = time.perf_counter() - start
            if bar is not None:
                bar.close()
            if self.summary.finished:
                log.info("%s", self.summary)

    def _record(self, result: PageResult, relevance: dict[int, float], bar: Any) -> PageResult:
        if relevance:
            result = result.model_copy(update={"relevance": relevance.get(result.page)})
        if result.ok:
            self.summary.succeeded += 1
        else:
            self.summary.failed += 1
            self.summary.failed_pages.append(result.page)
        if bar is not None:
            bar.update(1)
            if self.summary.failed:
                bar.set_postfix(failed=self.summary.failed)
        return result

    # -- inference ---------------------------------------------------------------------------------------------

    def _prompt(self) -> str:
        if self.task == "ocr":
            return OCR_PROMPT
        if self.task == "chart":
            return CHART_PROMPT
        if self.task == "grounded_ocr":
            return grounded_ocr_prompt()
        if self.task == "layout":
            return LAYOUT_PROMPT
        return self.question or ""

    def _infer(self, pages: list[tuple[RenderedPage, float]]) -> list[PageResult]:
        # Results go back by position, never by page number: read_rendered batches pages of different documents,
        # whose numbers repeat (two "page 1"s would otherwise trade or share answers).
        answered = iter(self._generate([(page, render_s) for page, render_s in pages if page.error is None]))
        return [self._failed(page, render_s) if page.error is not None else next(answered) for page, render_s in pages]

    def _failed(self, page: RenderedPage, render_s: float) -> PageResult:
        return PageResult(
            **page_fields(page, self.name, self.question, self.model),
            error=page.error,
            error_type=page.error_type or "PageRenderError",
            elapsed=render_s,
        )

    def _generate(self, batch: list[tuple[RenderedPage, float]]) -> list[PageResult]:
        if not batch:
            return []
        if not isinstance(self.task, str):
            return [self._extract(page, render_s) for page, render_s in batch]
        prompt = self._prompt()
        started = time.perf_counter()
        try:
            answers: list[Any] = self.engine.batch(
                [_user(p.image, prompt) for p, _ in batch], batch_size=len(batch), **self.generation
            )
        except Exception:
            # One bad page (e.g. too long for the context) must not sink its batch-mates: retry one by one.
            answers = []
            for page, _ in batch:
                try:
                    answers.append(self.engine.chat(_user(page.image, prompt), **self.generation))
                except Exception as exc:
                    answers.append(exc)
        notes: list[list[str]] = [[] for _ in batch]
        for index, ((page, _), answer) in enumerate(zip(batch, answers, strict=True)):
            if getattr(answer, "finish_reason", None) == "repetition":
                answers[index], notes[index] = self._retry_loop(page, prompt, answer)
        share = (time.perf_counter() - started) / len(batch)
        pairs = zip(batch, answers, notes, strict=True)
        return [self._result(page, answer, render_s + share, note) for (page, render_s), answer, note in pairs]

    def _retry_loop(self, page: RenderedPage, prompt: str, answer: Any) -> tuple[Any, list[str]]:
        """A page whose answer fell into a loop is read once more with :data:`~.tasks.REPETITION_RETRY`.

        A retry that finishes is the page's answer, with a warning that says so. A retry that loops again (or
        fails) leaves the page failed with :class:`~internvl_tools.errors.RepetitionError` (its cut text kept): a
        page is ok only when it was read, and a loop means the rest of the page was never read; resume retries it.
        """
        settings = ", ".join(f"{k}={v}" for k, v in REPETITION_RETRY.items())
        log.warning("page %d: the answer fell into a repetition loop; reading it again with %s", page.number, settings)
        try:
            again = self.engine.chat(_user(page.image, prompt), **{**self.generation, **REPETITION_RETRY})
        except Exception as exc:
            again = exc
        if isinstance(again, Exception) or answer_failure(again) is not None or again.finish_reason == "repetition":
            why = f"{type(again).__name__}: {again}" if isinstance(again, Exception) else "it looped again"
            return (
                RepetitionError(
                    f"the answer fell into a repetition loop and, read again with {settings}, {why}; its text up to "
                    "the loop is kept. Try a higher repetition_penalty or another dpi for this page."
                ),
                [answer.text],
            )
        return again, [f"the first answer fell into a repetition loop; read again with {settings}"]

    def _result(self, page: RenderedPage, answer: Any, elapsed: float, notes: list[str] | None = None) -> PageResult:
        base = page_fields(page, self.name, self.question, self.model)
        if isinstance(answer, RepetitionError):
            kept = (notes or [None])[0]
            return PageResult(
                **base, text=kept, **exception_fields(page.number, answer), finish_reason="repetition", elapsed=elapsed
            )
        if isinstance(answer, Exception):
            return PageResult(**base, **exception_fields(page.number, answer), elapsed=elapsed)
        warnings = list(notes or [])
        failure = answer_failure(answer)
        if failure is not None:
            # engine.batch answers an item it could not generate (too long, bad image) with finish_reason="error":
            # that page was not read, so it is a failed page (resume retries it), never an empty success.
            return PageResult(
                **base,
                **error_fields(page.number, *failure),
                usage=answer.usage,
                finish_reason=answer.finish_reason,
                elapsed=elapsed,
            )
        data = grounding = blocks = None
        text = answer.text
        try:
            if self.task == "chart":
                data = parse_chart_answer(answer.text)
            elif self.task == "grounded_ocr":
                grounding = parse_grounding(answer.text, page.size_px)
            elif self.task == "layout":
                grounding = parse_grounding(answer.text, page.size_px)
                layout = parse_layout(answer.text, page.size_px, base["page_size_pt"])
                blocks, text = layout.blocks, layout.markdown
                warnings.extend(layout.warnings)
        except Exception as exc:
            # Parsers are meant never to raise on a model's answer; if one does, the task's output (data, boxes)
            # is missing, so the page failed. Its text is kept on the record so nothing is lost.
            log.warning("page %d: could not parse the %s answer: %s", page.number, self.task, exc)
            return PageResult(
                **base,
                text=answer.text,
                **exception_fields(page.number, exc),
                usage=answer.usage,
                finish_reason=answer.finish_reason,
                elapsed=elapsed,
            )
        return PageResult(
            **base,
            text=text,
            data=data,
            grounding=grounding,
            blocks=blocks,
            warnings=warnings,
            usage=answer.usage,
            finish_reason=answer.finish_reason,
            elapsed=elapsed,
        )

    def _extract(self, page: RenderedPage, render_s: float) -> PageResult:
        started = time.perf_counter()
        base = page_fields(page, self.name, self.question, self.model)
        try:
            schema = json_schema_of(self.task)
            prompt = f"{SCHEMA_PROMPT}\n{json_instruction(schema)}"
            answer = self.engine.generate_structured(_user(page.image, prompt), schema, **self.generation)
            failure = answer_failure(answer)
            if failure is not None:
                return PageResult(
                    **base,
                    **error_fields(page.number, *failure),
                    usage=answer.usage,
                    finish_reason=answer.finish_reason,
                    elapsed=render_s + time.perf_counter() - started,
                )
            if answer.finish_reason != "stop":
                raise StructuredOutputError(
                    f"the JSON answer did not finish within max_new_tokens={self.generation['max_new_tokens']} "
                    f"(finish_reason={answer.finish_reason!r}); raise max_new_tokens. Partial: {answer.text[:80]!r}"
                )
            value = validate_output(answer.text, self.task)
            data = value.model_dump(mode="json") if hasattr(value, "model_dump") else value
        except Exception as exc:
            return PageResult(
                **base, **exception_fields(page.number, exc), elapsed=render_s + time.perf_counter() - started
            )
        return PageResult(
            **base,
            text=answer.text,
            data=data,
            usage=answer.usage,
            finish_reason=answer.finish_reason,
            elapsed=render_s + time.perf_counter() - started,
        )

    def _rank(self, todo: list[int]) -> dict[int, float]:
        """Relevance in [0, 1] per page: text-layer word overlap; a yes/no screen for pages with no text layer."""
        scores: dict[int, float] = {}
        unscored: list[RenderedPage] = []
        with self._render(todo, with_text=True) as stream:
            for page in stream:
                if page.error is not None:
                    scores[page.number] = 0.0
                elif page.text and page.text.strip():
                    scores[page.number] = _score(self.question or "", page.text)
                else:
                    unscored.append(page.__class__(**{**page.__dict__, "image": page.image.reduce(2)}))
                if len(unscored) >= self.batch_size:
                    scores.update(self._screen(unscored))
                    unscored = []
        scores.update(self._screen(unscored))
        return scores

    def _screen(self, pages: list[RenderedPage]) -> dict[int, float]:
        if not pages:
            return {}
        prompt = RELEVANCE_PROMPT.format(question=self.question)
        try:
            answers = self.engine.batch(
                [_user(p.image, prompt) for p in pages], batch_size=len(pages), max_new_tokens=3, do_sample=False
            )
        except Exception as exc:
            log.warning(
                "pages %s: relevance screening failed (%s: %s); ranked as not relevant",
                [p.number for p in pages],
                type(exc).__name__,
                exc,
            )
            return {p.number: 0.0 for p in pages}
        scores = {}
        for page, answer in zip(pages, answers, strict=True):
            failure = answer_failure(answer)
            if failure is not None:
                log.warning(
                    "page %d: relevance screening failed (%s: %s); ranked as not relevant", page.number, *failure
                )
            scores[page.number] = 1.0 if failure is None and answer.text.strip().lower().startswith("yes") else 0.0
        return scores
