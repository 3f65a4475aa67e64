"""The batching writer: group commit of every waiting request in one LMDB transaction.

Callers submit packed core requests and block. One thread takes everything waiting
(up to BATCH_SIZE_MAX requests), applies it through fastcore in one write transaction,
commits with sync, and only then hands each caller its reply. One fsync serves the
whole batch; no reply is ever seen before the commit holding its effects is durable.
"""
import _thread
import collections
import functools
import logging
import threading
import time
import uuid
from typing import Callable, Optional

import lmdb

from cardgate.fastcore import ledger, records
from cardgate.gateway import limits
from cardgate.gateway.store import batch_log, retention

log = logging.getLogger("cardgate.writer")
PROBE_KEY = b"probe"
PROBE_BYTES = 64 * 1024        # a probe commit needs this much room, as a batch might
REQUEST_IDS_NAMED_MAX = 3      # request ids a core fault's error and log line name


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


class NotPrimary(WriterError):
    """A follower of a replicated group takes no writes: they go to the primary."""


class LogRefused(Exception):
    """log_batch could not log (replicate) a batch: it is aborted, not committed."""


class GuardRefused(WriterError):
    pass


class CoreFault(WriterError):
    """The core raised while applying this submission's requests (a bug, or a damaged
    store): nothing of them was written, and the rest of their batch went on without them."""


class _Submission:
    """Requests of one caller, and how it learns the outcome: a latch it waits on, or a
    callback (for streams) that the writer calls once the batch is committed."""
    __slots__ = ("requests", "guard", "after", "replies", "error", "done", "callback")

    def __init__(self, requests: list, guard: Optional[Callable], after: Optional[Callable],
                 callback: Optional[Callable] = None):
        self.requests = requests
        # Runs inside the write transaction before the requests; returns an error
        # message to refuse the whole submission with nothing written, or None.
        self.guard = guard
        # Runs inside the same transaction after the core answered: after(txn, replies)
        # writes what belongs to the gateway (e.g. encrypted PANs) atomically with it.
        self.after = after
        self.replies = None
        self.error: Optional[WriterError] = None
        # A bare lock held until the writer answers: the cheapest latch CPython has.
        self.callback = callback      # callback(replies, error), on the writer thread
        self.done = _thread.allocate_lock()
        self.done.acquire()

    def finish(self):
        if self.callback is not None:
            self.callback(self.replies, self.error)
        else:
            self.done.release()


def yyyymm_of(epoch_s: int) -> int:
    t = time.gmtime(epoch_s)
    return t.tm_year * 100 + t.tm_mon


class BatchingWriter:
    def __init__(self, store, *, clock: Callable[[], int] = lambda: int(time.time()),
                 batch_size_max: int = limits.BATCH_SIZE_MAX,
                 queue_length_max: int = limits.QUEUE_LENGTH_MAX,
                 batch_linger_s: float = limits.BATCH_LINGER_S,
                 hold_timeout_s: int = limits.HOLD_TIMEOUT_S_DEFAULT,
                 idle_tick_s: float = limits.WRITER_IDLE_TICK_S, metrics=None,
                 on_commit_state: Callable[[bool], None] = lambda ok: None,
                 log_batch: Optional[Callable] = None,
                 retention_windows: Optional[retention.Windows] = None,
                 prune_interval_s: int = retention.PRUNE_INTERVAL_S):
        assert batch_size_max >= 1 and queue_length_max >= 1
        self.store = store
        self.metrics = metrics                      # gateway.metrics.Metrics, or None
        # Told when the store stops taking commits (False) and when it takes them again.
        self.on_commit_state = on_commit_state
        self.clock = clock
        self.batch_size_max = batch_size_max
        self.batch_linger_s = batch_linger_s
        self.hold_timeout_s = hold_timeout_s
        self.idle_tick_s = idle_tick_s
        self.queue_length_max = queue_length_max
        self._pending = collections.deque()
        self._wakeup = threading.Condition(threading.Lock())
        self._thread = threading.Thread(target=self._run, name="cardgate-writer", daemon=True)
        self._stopping = False
        self.commit_ok = True           # False while the store refuses commits
        self.batches_committed = 0
        # With replication: log_batch(entry, txn) publishes each batch (a batch_log.Entry)
        # inside its write transaction, before the commit; raising aborts the batch.
        self.log_batch = log_batch
        # None: this node writes (single node, or the replicated group's primary). Else a
        # follower: the primary's node id ("" while none holds the lease).
        self.primary_of = None
        # Records past their retention window are forgotten in small batches, inside the
        # batches' own transactions (logged with them), every prune_interval_s at most
        # (None: the store keeps everything).
        # The store's databases by identity -> name, as logged entries name their writes
        # (the store opens them once: built here, not for every batch).
        self._db_names = {id(db): name for name, db in store.databases_by_name().items()}
        self.retention_windows = retention_windows
        self.prune_interval_s = prune_interval_s
        self._next_prune_s = 0

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        with self._wakeup:
            self._stopping = True
            self._wakeup.notify()
        self._thread.join()

    def submit(self, packed_requests: list, *, guard=None, after=None,
               wait_s_max: float = limits.REPLY_WAIT_S_MAX) -> list:
        """Apply packed core requests durably; return their Reply tuples in order."""
        sub = self._enqueue(_Submission(list(packed_requests), guard, after))
        if not sub.done.acquire(timeout=wait_s_max):
            raise ReplyTimeout(f"no commit within {wait_s_max} s; the outcome is unknown, "
                               "retry with the same request_id")
        if sub.error is not None:
            raise sub.error
        return sub.replies

    def submit_async(self, packed_requests: list, callback: Callable):
        """Queue core requests and return at once; callback(replies, error) runs on the
        writer thread after their commit (keep it short: it delays the next batch)."""
        self._enqueue(_Submission(list(packed_requests), None, None, callback))

    def submit_each_async(self, packed_requests: list, callback: Callable):
        """Queue independent core requests at once, each a submission of its own (so that
        a fault of the core in one answers that one alone), in one group commit unless the
        batch is full; callback(index, replies, error) runs for each on the writer thread."""
        subs = [_Submission([packed], None, None, functools.partial(callback, i))
                for i, packed in enumerate(packed_requests)]
        self._enqueue(*subs)

    def _enqueue(self, *subs: _Submission) -> _Submission:
        # No core request at all: only the gateway's own records, written by `after`.
        for sub in subs:
            assert 0 < len(sub.requests) <= self.batch_size_max or (not sub.requests and sub.after)
        primary = self.primary_of
        if primary is not None:
            raise NotPrimary("this node is a follower; " + (f"the primary is {primary}: send it "
                             "there" if primary else "no primary holds the lease yet: retry in a "
                             "few seconds") + ", with the same request_id")
        with self._wakeup:
            if self._stopping:
                raise StoreFailed("the gateway is shutting down; retry with the same request_id")
            if len(self._pending) + len(subs) > self.queue_length_max:
                raise QueueFull(f"writer queue is full ({self.queue_length_max} submissions "
                                "waiting); retry later with the same request_id")
            self._pending.extend(subs)
            self._wakeup.notify()
        return subs[0]

    # ---- writer thread -------------------------------------------------------------

    def _take_batch(self) -> list:
        """Everything waiting, up to batch_size_max requests (after an optional linger)."""
        with self._wakeup:
            while not self._pending and not self._stopping:
                if not self._wakeup.wait(self.idle_tick_s):
                    return None                 # idle: time to look for expired holds
        if self.batch_linger_s and not self._stopping:
            time.sleep(self.batch_linger_s)
        batch, count = [], 0
        with self._wakeup:
            while self._pending and count + len(self._pending[0].requests) <= self.batch_size_max:
                sub = self._pending.popleft()
                batch.append(sub)
                count += len(sub.requests)
        return batch

    def _run(self):
        while True:
            batch = self._take_batch()
            if batch is None:
                if self.primary_of is not None:
                    pass                        # a follower: time ends holds on the primary
                elif self.commit_ok:
                    self._background_if_due()
                else:
                    self._probe()
            elif batch:
                self._apply_and_answer(batch)
            elif self._stopping:
                return

    def _apply_and_answer(self, batch: list):
        now_s = self.clock()
        self._commit_and_answer(batch, now_s, yyyymm_of(now_s))

    def _commit_and_answer(self, batch: list, now_s: int, now_yyyymm: int):
        """Apply the batch in one write transaction, commit it, answer it.

        Should the core raise (a bug, or a damaged store: nothing is written), the batch
        is applied again by halves, each in a transaction of its own with the same batch
        clock, down to the submission the core fails on alone: that one is answered
        CoreFault, naming its request ids; every other one is committed and answered as
        usual. One request thus never fails another's, nor comes back in the next batch;
        the extra commits (at most 2 x log2(submissions) a fault) are paid only then."""
        started = time.perf_counter()
        entry = batch_log.Entry(self.batches_committed + 1, now_s, now_yyyymm,
                                self.hold_timeout_s) if self.log_batch is not None else None
        if self.primary_of is not None:          # stepped down while the batch waited
            self._fail(batch, NotPrimary("this node stepped down as primary; retry with the "
                                         "same request_id"))
            return
        try:
            with self.store.env.begin(write=True) as txn:
                self._apply(txn, batch, now_s, now_yyyymm, entry)
                applied = time.perf_counter()
                if entry is not None:           # logged (replicated) before it commits
                    entry.digest = batch_log.replies_digest(entry.reply_parts)
                    self.log_batch(entry, txn)
            # Leaving the block committed the transaction, with fsync.
        except LogRefused as exc:
            log.error("batch not logged, so not committed: %s", exc)
            self._fail(batch, StoreFailed(f"the batch could not be replicated ({exc}); retry "
                                          "with the same request_id"))
            return
        except lmdb.MapFullError:
            self._commit_state(False)
            log.error("store is full (LMDB map size reached); batch of %d refused", len(batch))
            self._fail(batch, StoreFull("the card store is full; the operator must grow it; "
                                        "retry with the same request_id"))
            return
        except (lmdb.Error, OSError) as exc:
            self._commit_state(False)
            log.error("commit failed: %s", exc)
            self._fail(batch, StoreFailed(f"the card store could not commit ({type(exc).__name__}: "
                                          f"{exc}); retry with the same request_id"))
            return
        except Exception:
            if len(batch) == 1:
                self._fault(batch[0])
            elif batch:
                log.warning("a batch of %d submissions failed inside the core; nothing of it "
                            "was committed: applying it again by halves", len(batch))
                middle = len(batch) // 2
                self._commit_and_answer(batch[:middle], now_s, now_yyyymm)
                self._commit_and_answer(batch[middle:], now_s, now_yyyymm)
            else:
                log.exception("ending holds and lots in time failed inside the core; "
                              "nothing was committed")
            return
        if self.metrics is not None:
            self.metrics.batch(sum(len(sub.requests) for sub in batch), applied - started,
                               time.perf_counter() - applied)
            for sub in batch:
                if sub.replies:
                    self.metrics.business(sub.requests, sub.replies)
        self._commit_state(True)
        self.batches_committed += 1
        for sub in batch:
            sub.finish()

    @staticmethod
    def _fault(sub: _Submission):
        """The one submission the core fails on: answered CoreFault, logged with the trace."""
        ids = ", ".join(str(uuid.UUID(bytes=records.unpack_request(r).request_id))
                        for r in sub.requests[:REQUEST_IDS_NAMED_MAX])
        more = len(sub.requests) - REQUEST_IDS_NAMED_MAX
        ids += f" and {more} more" if more > 0 else ""
        log.exception("the core fails on request %s: answered with an error, nothing of it "
                      "written", ids)
        sub.replies = None
        sub.error = CoreFault(f"internal error in the core on request {ids}; nothing of it "
                              "was committed (the operator has it in the log)")
        sub.finish()

    def _commit_state(self, ok: bool):
        if ok != self.commit_ok:
            self.commit_ok = ok
            if self.metrics is not None:
                self.metrics.commit_ok.set(int(ok))
            log.warning("the store takes commits again" if ok else "the store refuses commits")
            self.on_commit_state(ok)

    def _probe(self):
        """While the store refuses commits and nobody sends anything, see every idle tick
        whether it takes one again (grown map, freed disk): a commit that needs
        PROBE_BYTES of new pages, written and deleted in the same transaction."""
        if self.metrics is not None:
            self.metrics.background.labels("probe").inc()
        try:
            with self.store.env.begin(write=True) as txn:
                txn.put(PROBE_KEY, bytes(PROBE_BYTES), db=self.store.db_probe)
                txn.delete(PROBE_KEY, db=self.store.db_probe)
        except (lmdb.Error, OSError) as exc:
            log.debug("the store still refuses commits: %s", exc)
            return
        self._commit_state(True)

    def _background_if_due(self):
        """With no traffic, holds and packages still end on time and old records are still
        forgotten: a batch of no requests (committed like any other) does it."""
        now_s = self.clock()
        try:
            with self.store.env.begin() as txn:
                expiry = ledger.expiry_due(txn, self.store.dbs, now_s)
                prune = self._prune_due(now_s) and retention.due(txn, self.store, now_s,
                                                                 self.retention_windows)
        except lmdb.Error as exc:
            log.error("looking for expired holds and prunable records failed: %s", exc)
            return
        if self._prune_due(now_s) and not prune:
            self._next_prune_s = now_s + self.prune_interval_s
        if expiry and self.metrics is not None:
            self.metrics.background.labels("expiry").inc()
        if expiry or prune:
            self._apply_and_answer([])

    def _prune_due(self, now_s: int) -> bool:
        return self.retention_windows is not None and now_s >= self._next_prune_s

    def _prune(self, txn, now_s: int):
        """Forget up to retention.PRUNED_PER_BATCH_MAX records past their window; again at
        the next batch if there were more, else in prune_interval_s."""
        if not self._prune_due(now_s):
            return
        pruned = sum(retention.prune(txn, self.store, now_s, self.retention_windows).values())
        more = pruned >= retention.PRUNED_PER_BATCH_MAX
        self._next_prune_s = now_s if more else now_s + self.prune_interval_s
        if pruned and self.metrics is not None:
            self.metrics.background.labels("pruned").inc(pruned)

    def _apply(self, txn, batch, now_s, now_yyyymm, entry=None):
        # Consecutive plain submissions go through the core in one call; one with a guard
        # or an after-hook is applied on its own, still inside the same transaction.
        # entry (replication on): every core call and every write of an after-hook (or
        # of pruning) is noted, in order, for followers to replay.
        hooks_txn = txn if entry is None else batch_log.RecordingTxn(txn, entry, self._db_names)
        if not batch:                       # what time ends (see _background_if_due)
            self._core(txn, b"", now_s, now_yyyymm, entry)
            self._prune(hooks_txn, now_s)
            return
        run = []
        for sub in batch:
            if sub.guard is None and sub.after is None:
                run.append(sub)
                continue
            self._apply_run(txn, run, now_s, now_yyyymm, entry)
            run = []
            refusal = sub.guard(txn) if sub.guard is not None else None
            if refusal is not None:
                sub.error = GuardRefused(refusal)
                continue
            self._apply_run(txn, [sub], now_s, now_yyyymm, entry)
            if sub.after is not None:
                sub.after(hooks_txn, sub.replies)
        self._apply_run(txn, run, now_s, now_yyyymm, entry)
        self._prune(hooks_txn, now_s)

    def _core(self, txn, packed, now_s, now_yyyymm, entry):
        replies = ledger.apply_batch(txn, self.store.dbs, packed, now_s, now_yyyymm,
                                     self.hold_timeout_s)
        if entry is not None:
            entry.core_run(packed)
            entry.reply_parts.append(replies)
        return replies

    def _apply_run(self, txn, run, now_s, now_yyyymm, entry=None):
        packed = b"".join(r for sub in run for r in sub.requests)
        if not packed:
            for sub in run:
                sub.replies = []
            return
        replies = records.unpack_replies(self._core(txn, packed, now_s, now_yyyymm, entry))
        at = 0
        for sub in run:
            sub.replies = replies[at:at + len(sub.requests)]
            at += len(sub.requests)

    @staticmethod
    def _fail(batch, error):
        for sub in batch:
            sub.replies = None
            sub.error = error
            sub.finish()
