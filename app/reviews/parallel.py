"""``dealcoach review --jobs N``: the export's records reviewed in N worker processes.

The main process parses the export (it is one stream) and writes the output;
the workers map, review and render each batch of records. Batches come back in
file order, and at most ``2 x N`` are in flight, so memory stays flat whatever
the file's size.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Iterator, Mapping
from datetime import datetime
from multiprocessing.pool import AsyncResult
from typing import Any

from app.coaching.playbook import compile_playbook, load_playbook
from app.coaching.snapshot import StageCatalogue
from app.reviews.offline import (
    ExportError,
    ExportStream,
    Provider,
    RecordError,
    RenderedReview,
    render_review,
    review_record,
)

#: Records per task: large enough that sending a batch costs little against reviewing it.
BATCH = 256

_worker: dict[str, Any] = {}


def _start_worker(
    provider: Provider,
    stages: Mapping[str, StageCatalogue],
    playbook: str,
    as_of: datetime,
    name: str,
    output_format: str,
    audience: str,
) -> None:
    _worker.update(
        provider=provider,
        stages=stages,
        playbook=compile_playbook(load_playbook(playbook)),
        as_of=as_of,
        name=name,
        output_format=output_format,
        audience=audience,
    )


def _review_batch(batch: list[tuple[int, object]]) -> list[RenderedReview | RecordError]:
    state = _worker
    out: list[RenderedReview | RecordError] = []
    for index, record in batch:
        item = review_record(
            state["provider"],
            record,
            index,
            state["stages"],
            state["playbook"],
            state["as_of"],
            state["name"],
        )
        out.append(
            item
            if isinstance(item, RecordError)
            else render_review(item, state["output_format"], state["audience"])
        )
    return out


def reviewed_in_workers(
    stream: ExportStream, jobs: int, playbook: str, output_format: str, audience: str
) -> Iterator[RenderedReview | RecordError]:
    """Each record's rendered review (or its error), in file order, made by ``jobs``
    worker processes. An :class:`ExportError` part-way is raised after the records
    before it have been yielded."""
    if stream.as_of is None:
        raise TypeError("reviewing needs as_of")
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    initargs = (
        stream.provider,
        stream.stages,
        playbook,
        stream.as_of,
        stream.name,
        output_format,
        audience,
    )
    failure: ExportError | None = None
    with context.Pool(jobs, initializer=_start_worker, initargs=initargs) as pool:
        pending: deque[AsyncResult[list[RenderedReview | RecordError]]] = deque()
        batch: list[tuple[int, object]] = []
        try:
            for index, record in enumerate(stream.records()):
                batch.append((index, record))
                if len(batch) < BATCH:
                    continue
                pending.append(pool.apply_async(_review_batch, (batch,)))
                batch = []
                while len(pending) > 2 * jobs:
                    yield from pending.popleft().get()
        except ExportError as exc:
            failure = exc
        if batch:
            pending.append(pool.apply_async(_review_batch, (batch,)))
        while pending:
            yield from pending.popleft().get()
    if failure is not None:
        raise failure
