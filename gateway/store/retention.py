"""Bounded store growth: what the store may forget once its retention window has passed.

The core indexes every prunable record in the retention database when it becomes
prunable (records.RETAIN_*, keyed kind(1) + time(8, big-endian) + id(16)):

  requests    an idempotency record (what a retry is answered from), from its request
  tombstones  a blind reversal's tombstone (what declines an original arriving later)
  holds       a pre-authorization's hold, from its end (completed, voided, reversed, expired)
  lots        a package or point lot, from when it was used up or expired
  reviews     a sale flagged for review, from its time

The writer prunes (prune()) in small batches inside its own write transaction: with
replication on, the deletions are logged like every other write of the batch, so every
node forgets the same records at the same point of the stream. Each kind's watermark
("pruned through": every record of that kind indexed before it is gone) is kept beside
the index; the audit reads it, since a journal entry older than it may name a record
that is gone.

What stays: cards, accounts, the journal (the ledger itself), points histories, the
admin log.

A request id is remembered for the requests window: a retry with a pruned request id is
a new request (payment terminals retry for minutes and reverse within a day; keep the
window longer than the longest retry, reversal, refund by reference, advice or late
completion your network allows). A reversal naming a pruned request finds nothing to
reverse: it leaves a tombstone and moves nothing, as for any request never seen.
"""
import dataclasses
import re

from cardgate.fastcore import records

DAY_S = 86400
PRUNED_PER_BATCH_MAX = 2000      # records forgotten in one batch, at most (the rest: next one)
PRUNE_INTERVAL_S = 10            # the writer looks for prunable records this often, at most
WATERMARK_PREFIX = b"~"          # beside the index: b"~" + kind -> pruned through (8, big-endian)

# kind name -> (index kind, the store's database of the records)
KINDS = {
    "requests": ((records.RETAIN_REQUEST,), "db_requests"),
    "tombstones": ((records.RETAIN_TOMBSTONE,), "db_requests"),
    "holds": ((records.RETAIN_HOLD,), "db_holds"),
    "lots": ((records.RETAIN_PACKAGE, records.RETAIN_POINT_LOT), None),
    "reviews": ((records.RETAIN_REVIEW,), "db_reviews"),
}
_LOT_DBS = {records.RETAIN_PACKAGE: "db_packages", records.RETAIN_POINT_LOT: "db_point_lots"}


@dataclasses.dataclass(frozen=True)
class Windows:
    """How long each kind is kept, in seconds; None: for ever."""
    requests: int = 35 * DAY_S
    tombstones: int = 35 * DAY_S
    holds: int = 35 * DAY_S
    lots: int = 35 * DAY_S
    reviews: int = 90 * DAY_S

    @classmethod
    def parse(cls, spec: str) -> "Windows":
        """'off' (keep everything), or 'kind=DAYS[,kind=DAYS...]' over the defaults, where
        DAYS is a whole number of days, or 'never'; e.g. 'requests=60,reviews=never'."""
        spec = spec.strip()
        if spec == "off":
            return cls(**{name: None for name in KINDS})
        values = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            name, _, days = part.partition("=")
            name, days = name.strip(), days.strip()
            if name not in KINDS:
                raise ValueError(f"unknown retention kind {name!r}: one of {', '.join(KINDS)}")
            if days == "never":
                values[name] = None
            elif re.fullmatch(r"[0-9]{1,5}", days) and int(days) >= 1:
                values[name] = int(days) * DAY_S
            else:
                raise ValueError(f"retention of {name}: {days!r} is not a whole number of days "
                                 "(1 to 99999) or 'never'")
        return cls(**values)

    def describe(self) -> str:
        return ", ".join(f"{name} {'for ever' if s is None else f'{s // DAY_S} days'}"
                         for name, s in dataclasses.asdict(self).items())

    def cutoffs(self, now_s: int):
        """(index kind, database attribute, cutoff_s) of every kind with a window: its
        records indexed before cutoff_s are prunable at now_s."""
        for name, (kinds, db) in KINDS.items():
            window_s = getattr(self, name)
            if window_s is None or now_s <= window_s:
                continue
            for kind in kinds:
                yield kind, db or _LOT_DBS[kind], now_s - window_s


def _still_used(kind: bytes, value) -> bool:
    """A record indexed as ended that is in use again (a lot back open): only its index
    entry goes; it is indexed anew when it ends again."""
    if value is None or kind in (records.RETAIN_REQUEST, records.RETAIN_TOMBSTONE,
                                 records.RETAIN_REVIEW):
        return False
    if kind == records.RETAIN_HOLD:
        return records.unpack_hold(value).status == records.HoldState.OPEN
    return records.unpack_lot(value).status in (records.LotState.OPEN, records.LotState.HELD)


def _due_keys(txn, db, kind: bytes, cutoff_s: int, count_max: int) -> list:
    """Up to count_max index keys of the kind before cutoff_s, oldest first."""
    end = kind + cutoff_s.to_bytes(8, "big")
    keys = []
    cursor = txn.cursor(db=db)
    if cursor.set_range(kind):
        for key in cursor.iternext(keys=True, values=False):
            if len(keys) >= count_max or bytes(key[:9]) >= end:
                break
            keys.append(bytes(key))
    cursor.close()
    return keys


def due(txn, store, now_s: int, windows: Windows) -> bool:
    """True when at least one record is prunable at now_s."""
    return any(_due_keys(txn, store.db_retention, kind, cutoff_s, 1)
               for kind, _, cutoff_s in windows.cutoffs(now_s))


def prune(txn, store, now_s: int, windows: Windows,
          count_max: int = PRUNED_PER_BATCH_MAX) -> dict:
    """Forget, inside the write transaction txn, up to count_max records whose window has
    passed at now_s, oldest first; advance each kind's watermark. Returns {kind: count}.
    txn may be a batch_log.RecordingTxn: then every deletion is logged for followers."""
    pruned = {}
    index = store.db_retention
    for kind, db_name, cutoff_s in windows.cutoffs(now_s):
        if count_max <= 0:
            break
        keys = _due_keys(txn, index, kind, cutoff_s, count_max + 1)
        # Everything indexed before `through` will be gone: the cutoff, or the time of
        # the first entry this batch leaves for the next.
        through = cutoff_s if len(keys) <= count_max else int.from_bytes(keys.pop()[1:9], "big")
        db = getattr(store, db_name)
        for key in keys:
            record_id = key[9:]
            if not _still_used(kind, txn.get(record_id, db=db)):
                txn.delete(record_id, db=db)
            txn.delete(key, db=index)
        count_max -= len(keys)
        if keys:
            _set_watermark(txn, index, kind, through)
            pruned[kind] = len(keys)
    return pruned


def _set_watermark(txn, index, kind: bytes, through_s: int):
    key = WATERMARK_PREFIX + kind
    before = txn.get(key, db=index)
    if before is None or int.from_bytes(before, "big") < through_s:
        txn.put(key, through_s.to_bytes(8, "big"), db=index)


def pruned_through(txn, store) -> dict:
    """{index kind: time}: every record of that kind indexed before the time is gone."""
    found = {}
    cursor = txn.cursor(db=store.db_retention)
    if cursor.set_range(WATERMARK_PREFIX):
        for key, value in cursor:
            found[bytes(key[1:])] = int.from_bytes(value, "big")
    cursor.close()
    return found
