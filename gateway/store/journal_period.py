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


def first_seq_at(store, txn, from_s: int) -> int:
    """The sequence number of the first journal entry stamped at or after from_s."""
    return bisect.bisect_left(_EntryTimes(txn, store.db_journal), from_s) + 1
