"""One committed batch as an entry of the replicated log, and its replay.

With replication on, the writer publishes each batch before it commits (replication.py);
a follower replays the entries in order on its own copy of the store. An entry holds
everything the batch wrote, in the order it wrote it, so that the replay needs no
wall clock, no randomness and no Python callback of the primary:

  * the batch's number, its clock (now_s, now_yyyymm) and the hold timeout the core used;
  * its steps: a run of packed core requests (replayed through ledger.apply_batch with
    the batch's clock), or a write the gateway made beside the core in the same
    transaction (an after-hook: encrypted PANs and holder names, jobs, acceptance, the
    admin log's gateway lines), as (database, key, value or None for a delete);
  * the SHA-256 of every reply the core gave, in order: a follower's replay must give
    the same digest, else the core is not deterministic (a bug) and the follower stops.

Format (version 1), big-endian: MAGIC, batch number (8), now_s (8), now_yyyymm (4),
hold timeout (8), digest (32), step count (4), then per step a kind byte: 1 core run
(length 4, packed requests), 2 write (database name length 1 + name, key length 2 + key,
value length 4 + value, or 0xFFFFFFFF for a delete).
"""
import dataclasses
import hashlib
import struct

from cardgate.fastcore import ledger

MAGIC = b"CGB1"
CORE_RUN, WRITE = 1, 2
DELETED = 0xFFFF_FFFF
_HEAD = struct.Struct(">4sQQIQ32sI")


class LogError(ValueError):
    """An entry that cannot be read, or a replay that does not give the logged replies."""


@dataclasses.dataclass
class Entry:
    batch_no: int
    now_s: int
    now_yyyymm: int
    hold_timeout_s: int
    # (CORE_RUN, packed requests) | (WRITE, database name, key, value or None)
    steps: list = dataclasses.field(default_factory=list)
    digest: bytes = b"\0" * 32
    # The primary's raw replies of each core call, for the digest (not logged).
    reply_parts: list = dataclasses.field(default_factory=list, repr=False, compare=False)

    def core_run(self, packed: bytes):
        """One call of ledger.apply_batch (an empty one too: it ends what time ended)."""
        self.steps.append((CORE_RUN, packed))

    def write(self, db_name: bytes, key: bytes, value):
        self.steps.append((WRITE, db_name, key, value))

    def encode(self) -> bytes:
        parts = [_HEAD.pack(MAGIC, self.batch_no, self.now_s, self.now_yyyymm,
                            self.hold_timeout_s, self.digest, len(self.steps))]
        for step in self.steps:
            if step[0] == CORE_RUN:
                parts += [bytes([CORE_RUN]), struct.pack(">I", len(step[1])), step[1]]
            else:
                _, db, key, value = step
                parts += [bytes([WRITE, len(db)]), db, struct.pack(">H", len(key)), key,
                          struct.pack(">I", DELETED if value is None else len(value)),
                          value or b""]
        return b"".join(parts)


def decode(data: bytes) -> Entry:
    try:
        magic, batch_no, now_s, now_yyyymm, timeout, digest, count = _HEAD.unpack_from(data)
        if magic != MAGIC:
            raise LogError("not a batch of this cardgate's log")
        entry = Entry(batch_no, now_s, now_yyyymm, timeout, digest=digest)
        at = _HEAD.size
        for _ in range(count):
            kind = data[at]
            at += 1
            if kind == CORE_RUN:
                size, = struct.unpack_from(">I", data, at)
                entry.steps.append((CORE_RUN, data[at + 4:at + 4 + size]))
                at += 4 + size
            elif kind == WRITE:
                db = data[at + 1:at + 1 + data[at]]
                at += 1 + data[at]
                key_size, = struct.unpack_from(">H", data, at)
                key = data[at + 2:at + 2 + key_size]
                at += 2 + key_size
                size, = struct.unpack_from(">I", data, at)
                at += 4
                value = None if size == DELETED else data[at:at + size]
                at += 0 if size == DELETED else size
                entry.steps.append((WRITE, db, key, value))
            else:
                raise LogError(f"unknown step kind {kind}")
        if at != len(data):
            raise LogError(f"{len(data) - at} bytes after the last step")
        return entry
    except (struct.error, IndexError) as exc:
        raise LogError(f"a truncated batch entry ({exc})") from None


class RecordingTxn:
    """A write transaction as an after-hook sees it: every put and delete goes through to
    LMDB and into the entry, named by its database, so that a follower replays it."""

    def __init__(self, txn, entry: Entry, db_names: dict):
        self._txn, self._entry, self._names = txn, entry, db_names

    def get(self, key, default=None, db=None):
        return self._txn.get(key, default, db=db)

    def put(self, key, value, db=None, **kwargs):
        self._entry.write(self._names[id(db)], bytes(key), bytes(value))
        return self._txn.put(key, value, db=db, **kwargs)

    def delete(self, key, value=b"", db=None):
        self._entry.write(self._names[id(db)], bytes(key), None)
        return self._txn.delete(key, value, db=db)

    def cursor(self, db=None):
        return self._txn.cursor(db=db)


def replies_digest(replies_bytes: list) -> bytes:
    digest = hashlib.sha256()
    for part in replies_bytes:
        digest.update(part)
    return digest.digest()


def replay(txn, store, entry: Entry) -> bytes:
    """Apply an entry's steps in the write transaction txn, as the primary did; return
    the digest of the core's replies (the caller compares it with entry.digest)."""
    replies = []
    dbs = store.databases_by_name()
    for step in entry.steps:
        if step[0] == CORE_RUN:
            replies.append(ledger.apply_batch(txn, store.dbs, step[1], entry.now_s,
                                              entry.now_yyyymm, entry.hold_timeout_s))
        else:
            _, db_name, key, value = step
            db = dbs.get(db_name)
            if db is None:
                raise LogError(f"a write to a database this store does not have: {db_name!r}")
            if value is None:
                txn.delete(key, db=db)
            else:
                txn.put(key, value, db=db)
    return replies_digest(replies)


def apply_entry(store, entry: Entry):
    """A follower's step: replay one entry in its own write transaction and commit it,
    unless the core's replies differ from the primary's (the core is then not a
    deterministic function of store, batch and clock: a bug): LogError, nothing written."""
    with store.env.begin(write=True) as txn:
        digest = replay(txn, store, entry)
        if digest != entry.digest:
            raise LogError(f"batch {entry.batch_no}: the replay's replies differ from the "
                           "primary's (digest mismatch); this node stops here")
