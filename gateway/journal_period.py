"""The journal entries of a period, found without reading the journal from its start:
entry times never go back (the writer stamps each batch with its clock), so the first
entry of a period is found by bisecting on sequence numbers."""
import bisect
import collections.abc

from cardgate.fastcore import records


class _EntryTimes(collections.abc.Sequence):
    """The journal as a sequence of entry times (index i: entry seq i + 1)."""

    def __init__(self, txn, db):
        self.txn, self.db = txn, db
        cursor = txn.cursor(db=db)
        self.last = records.journal_seq_of(cursor.key()) if cursor.last() else 0

    def __len__(self):
        return self.last

    def __getitem__(self, index):
        return records.unpack_journal_entry(self.txn.get(records.journal_key(index + 1),
                                                         db=self.db)).time_s


def entries_between(store, txn, from_s: int, until_s: int):
    """records.JournalView of every entry stamped in [from_s, until_s), in order."""
    first = bisect.bisect_left(_EntryTimes(txn, store.db_journal), from_s) + 1
    cursor = txn.cursor(db=store.db_journal)
    if not cursor.set_key(records.journal_key(first)):
        return
    for value in cursor.iternext(keys=False):
        entry = records.unpack_journal_entry(value)
        if entry.time_s >= until_s:
            return
        yield entry
