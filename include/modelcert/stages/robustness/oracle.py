"""The lock-step query oracle: many attack threads, one batched model call per round, deterministic order."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np


class _Abort(BaseException):
    """Unwinds an attack thread when the oracle stops early (an error elsewhere)."""


class _Worker:
    def __init__(self, oracle: LockstepOracle, key: int, job: Callable[[Callable[[np.ndarray], np.ndarray]], Any]):
        self.oracle = oracle
        self.key = key
        self.job = job
        self.go = threading.Semaphore(0)
        self.request: np.ndarray | None = None
        self.response: np.ndarray | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = False
        self.thread = threading.Thread(target=self._main, name=f"modelcert-hsj-{key}", daemon=True)

    def _main(self) -> None:
        self.go.acquire()
        try:
            if not self.oracle.aborted:
                self.result = self.job(self.predict)
        except _Abort:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the coordinating thread, which re-raises it
            self.error = exc
        finally:
            self.done = True
            self.oracle.back.release()

    def predict(self, z: np.ndarray) -> np.ndarray:
        self.request = np.asarray(z, dtype=float).reshape(len(z), -1)
        self.oracle.back.release()
        self.go.acquire()
        if self.oracle.aborted:
            raise _Abort()
        out, self.response = self.response, None
        assert out is not None
        return out


class LockstepOracle:
    """Runs one job per row in its own thread, one thread at a time in a fixed order, and answers the pending
    predict calls of all threads in one batched model call per round.

    Why: ART's HopSkipJump attacks rows sequentially and queries the model one small batch at a time; the model
    call overhead (not the rows) dominates, so batching the queries of all rows cuts the runtime ~100x. Only one
    thread runs at any moment, in row order, so the global numpy RNG that HopSkipJump uses is consumed in a fixed
    order and the run is reproducible."""

    def __init__(self, answer: Callable[[np.ndarray, np.ndarray], np.ndarray]):
        #: answer(row keys per query row, query matrix) -> one-hot predictions
        self.answer = answer
        self.back = threading.Semaphore(0)
        self.aborted = False
        self.model_calls = 0
        self.queries = 0  # predict calls the attacks made (what an unbatched run would send to the model)
        self.rows_evaluated = 0

    def run(self, jobs: dict[int, Callable[[Callable[[np.ndarray], np.ndarray]], Any]]) -> dict[int, Any]:
        self.aborted = False
        workers = [_Worker(self, key, job) for key, job in jobs.items()]
        for w in workers:
            w.thread.start()
        live = list(workers)
        try:
            while live:
                for w in live:  # one at a time: w runs until it queries the model or finishes
                    w.go.release()
                    self.back.acquire()
                for w in live:
                    if w.error is not None:
                        raise w.error
                live = [w for w in live if not w.done]
                if not live:
                    break
                keys = np.concatenate([np.full(len(w.request), w.key) for w in live])  # type: ignore[arg-type]
                queries = np.concatenate([w.request for w in live])  # type: ignore[misc]
                onehot = self.answer(keys, queries)
                self.model_calls += 1
                self.queries += len(live)
                self.rows_evaluated += len(queries)
                start = 0
                for w in live:
                    n = len(w.request)  # type: ignore[arg-type]
                    w.response, w.request = onehot[start:start + n], None
                    start += n
        finally:
            pending = [w for w in workers if not w.done]
            if pending:
                self.aborted = True
                for w in pending:
                    w.go.release()
            for w in workers:  # every thread has released `back` and is about to end (or unwinding _Abort)
                w.thread.join(timeout=10)
        return {w.key: w.result for w in workers}
