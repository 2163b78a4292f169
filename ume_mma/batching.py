"""Batching concurrent requests through the encoders: predictions asked for at the same time from several
threads (a server's workers) run as one :meth:`Predictor.predict_many` call, one encoder call per modality.

No background thread and no added wait: the first caller becomes the *leader* and runs every request queued
so far as one batch; requests that arrive meanwhile queue up and the leader runs them as the next batch. A
request alone runs at once, as a plain ``predict`` would. Each caller gets its own result or its own error.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from ume_mma.predictor import Prediction, Predictor, modality_list


@dataclass
class _Request:
    inputs: Mapping[str, Any]
    modalities: list[str] | None
    subsets: bool
    future: Future = field(default_factory=Future)


class MicroBatcher:
    """``predict`` with the signature of :meth:`Predictor.predict`, batching calls that overlap in time
    (at most ``max_batch`` requests per ``predict_many`` call). ``stats``: batches run and requests served."""

    def __init__(self, predictor: Predictor, max_batch: int = 16) -> None:
        self.predictor, self.max_batch = predictor, max_batch
        self._pending: list[_Request] = []
        self._leading = False
        self._lock = threading.Lock()
        self.stats = {"batches": 0, "requests": 0, "largest_batch": 0}

    def predict(
        self, inputs: Mapping[str, Any], modalities: Iterable[str] | None = None, subsets: bool = False
    ) -> Prediction:
        """Queue one request; the calling thread either leads (runs batches) or waits for its result."""
        request = _Request(inputs, modality_list(modalities), subsets)
        with self._lock:
            self._pending.append(request)
            lead = not self._leading
            self._leading = self._leading or lead
        if lead:
            self._lead()
        return request.future.result()  # raises the request's own error

    def _lead(self) -> None:
        while True:
            with self._lock:
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
                if not batch:
                    self._leading = False
                    return
            self._run(batch)

    def _run(self, batch: list[_Request]) -> None:
        try:
            for subsets in sorted({r.subsets for r in batch}):  # predict_many takes one subsets flag
                group = [r for r in batch if r.subsets == subsets]
                results = self.predictor.predict_many(
                    [r.inputs for r in group], subsets=subsets, modalities_each=[r.modalities for r in group]
                )
                for request, result in zip(group, results, strict=True):
                    if isinstance(result, BaseException):
                        request.future.set_exception(result)
                    else:
                        request.future.set_result(result)
        except BaseException as exc:  # a bug: every waiting caller hears of it, none waits forever
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(exc)
        with self._lock:
            self.stats["batches"] += 1
            self.stats["requests"] += len(batch)
            self.stats["largest_batch"] = max(self.stats["largest_batch"], len(batch))
