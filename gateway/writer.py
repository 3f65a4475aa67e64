"""The batching writer: group commit of every waiting request in one LMDB transaction.

Callers submit packed core requests and block. One thread takes everything waiting
(up to BATCH_SIZE_MAX requests), applies it through fastcore in one write transaction,
commits with sync, and only then hands each caller its reply. One fsync serves the
whole batch; no reply is ever seen before the commit holding its effects is durable.
"""
import dataclasses
import logging
import queue
import threading
import time
from typing import Callable, Optional

import lmdb

from cardgate.fastcore import ledger, records

from . import limits

log = logging.getLogger("cardgate.writer")


class WriterError(Exception):
    """The writer could not answer; nothing of the submission was committed."""


class QueueFull(WriterError):
    pass


class StoreFull(WriterError):
    pass


class StoreFailed(WriterError):
    pass


class ReplyTimeout(WriterError):
    """No answer in time: the requests may or may not have committed; retry them."""


class GuardRefused(WriterError):
    pass


@dataclasses.dataclass(eq=False)
class _Submission:
    requests: list
    # Runs inside the write transaction before the requests; returns an error message
    # to refuse the whole submission with nothing written, or None to go on.
    guard: Optional[Callable] = None
    replies: Optional[list] = None
    error: Optional[WriterError] = None
    done: threading.Event = dataclasses.field(default_factory=threading.Event)


def yyyymm_of(epoch_s: int) -> int:
    t = time.gmtime(epoch_s)
    return t.tm_year * 100 + t.tm_mon


class BatchingWriter:
    def __init__(self, store, *, clock: Callable[[], int] = lambda: int(time.time()),
                 batch_size_max: int = limits.BATCH_SIZE_MAX,
                 queue_length_max: int = limits.QUEUE_LENGTH_MAX,
                 batch_linger_s: float = limits.BATCH_LINGER_S,
                 on_batch: Optional[Callable] = None):
        assert batch_size_max >= 1 and queue_length_max >= 1
        self.store = store
        self.clock = clock
        self.batch_size_max = batch_size_max
        self.batch_linger_s = batch_linger_s
        self.on_batch = on_batch
        self._queue = queue.Queue(maxsize=queue_length_max)
        self._thread = threading.Thread(target=self._run, name="cardgate-writer", daemon=True)
        self._stopping = False
        self.commit_ok = True           # False while the store refuses commits
        self.batches_committed = 0

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stopping = True
        self._queue.put(None)
        self._thread.join()

    def submit(self, packed_requests: list, *, guard=None,
               wait_s_max: float = limits.REPLY_WAIT_S_MAX) -> list:
        """Apply packed core requests durably; return their Reply tuples in order."""
        assert 0 < len(packed_requests) <= self.batch_size_max
        if self._stopping:
            raise StoreFailed("the gateway is shutting down; retry with the same request_id")
        sub = _Submission(list(packed_requests), guard)
        try:
            self._queue.put_nowait(sub)
        except queue.Full:
            raise QueueFull(f"writer queue is full ({self._queue.maxsize} submissions waiting); "
                            "retry later with the same request_id") from None
        if not sub.done.wait(wait_s_max):
            raise ReplyTimeout(f"no commit within {wait_s_max} s; the outcome is unknown, "
                               "retry with the same request_id")
        if sub.error is not None:
            raise sub.error
        return sub.replies

    # ---- writer thread -------------------------------------------------------------

    def _take_batch(self) -> list:
        first = self._queue.get()
        if first is None:
            return []
        batch, count = [first], len(first.requests)
        deadline = time.monotonic() + self.batch_linger_s
        while count < self.batch_size_max:
            try:
                timeout = deadline - time.monotonic()
                sub = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if sub is None:
                self._stopping = True
                break
            if count + len(sub.requests) > self.batch_size_max:
                self._apply_and_answer(batch)
                batch, count = [], 0
            batch.append(sub)
            count += len(sub.requests)
        return batch

    def _run(self):
        while True:
            batch = self._take_batch()
            if batch:
                self._apply_and_answer(batch)
            if self._stopping and self._queue.empty():
                return

    def _apply_and_answer(self, batch: list):
        started = time.perf_counter()
        now_s = self.clock()
        now_yyyymm = yyyymm_of(now_s)
        try:
            with self.store.env.begin(write=True) as txn:
                self._apply(txn, batch, now_s, now_yyyymm)
            # Leaving the block committed the transaction, with fsync.
        except lmdb.MapFullError:
            self.commit_ok = False
            log.error("store is full (LMDB map size reached); batch of %d refused", len(batch))
            self._fail(batch, StoreFull("the card store is full; the operator must grow it; "
                                        "retry with the same request_id"))
            return
        except (lmdb.Error, OSError) as exc:
            self.commit_ok = False
            log.error("commit failed: %s", exc)
            self._fail(batch, StoreFailed(f"the card store could not commit ({type(exc).__name__}); "
                                          "retry with the same request_id"))
            return
        except Exception:
            log.exception("batch failed inside the core; nothing of it was committed")
            self._fail(batch, StoreFailed("internal error in the core; nothing was committed"))
            return
        self.commit_ok = True
        self.batches_committed += 1
        for sub in batch:
            sub.done.set()
        if self.on_batch is not None:
            self.on_batch(sum(len(s.requests) for s in batch), time.perf_counter() - started)

    def _apply(self, txn, batch, now_s, now_yyyymm):
        # Consecutive unguarded submissions go through the core in one call; a guarded
        # one is checked and applied on its own, still inside the same transaction.
        run = []
        for sub in batch:
            if sub.guard is None:
                run.append(sub)
                continue
            self._apply_run(txn, run, now_s, now_yyyymm)
            run = []
            refusal = sub.guard(txn)
            if refusal is not None:
                sub.error = GuardRefused(refusal)
                continue
            self._apply_run(txn, [sub], now_s, now_yyyymm)
        self._apply_run(txn, run, now_s, now_yyyymm)

    def _apply_run(self, txn, run, now_s, now_yyyymm):
        if not run:
            return
        packed = b"".join(r for sub in run for r in sub.requests)
        replies = records.unpack_replies(
            ledger.apply_batch(txn, self.store.dbs, packed, now_s, now_yyyymm))
        at = 0
        for sub in run:
            sub.replies = replies[at:at + len(sub.requests)]
            at += len(sub.requests)

    @staticmethod
    def _fail(batch, error):
        for sub in batch:
            sub.replies = None
            sub.error = error
            sub.done.set()
