"""`cardgate keys`: rotate the data key of stored PANs (and holder names), verify them,
retire old keys; rewrap every key under a new key-encryption key.

Runs beside a serving gateway on the same data directory: every chunk of records is
re-encrypted in its own short write transaction, and an interrupted rotation is
finished by running it again.
"""
import collections
import os
import pathlib

from cardgate.fastcore import records
from cardgate.gateway.security import kek as kek_mod
from cardgate.gateway.security.datakeys import HOLDER, PAN, KeyError_, record_key_id
from cardgate.gateway.store.store import Store

ROTATE_CHUNK_RECORDS = 500


def _encrypted(store) -> list:
    """(database, purpose) of each kind of record kept under the data keys."""
    return [(db, purpose) for db, purpose in ((store.db_pans, PAN), (store.db_holders, HOLDER))
            if db is not None]


def key_id_counts(store) -> collections.Counter:
    with store.env.begin() as txn:
        return collections.Counter(record_key_id(v) for db, _ in _encrypted(store)
                                   for _, v in txn.cursor(db=db))


def _stale_after(store, db, active: str, after: bytes, limit: int):
    """Up to `limit` keys after `after` whose record is not under the active key, and
    where the scan stopped: each chunk goes on where the last one ended."""
    stale = []
    with store.env.begin() as txn:
        cursor = txn.cursor(db=db)
        found = cursor.set_range(after) if after else cursor.first()
        while found and len(stale) < limit:
            key = cursor.key()
            if key != after and record_key_id(cursor.value()) != active:
                stale.append(key)
            found = cursor.next()
    return stale, (stale[-1] if stale else after)


def rotate(data_dir, *, chunk_records=ROTATE_CHUNK_RECORDS, max_records=None):
    """Re-encrypt every PAN under the active key, starting a new key first unless a
    rotation is unfinished. Returns (active key id, records re-encrypted, records left)."""
    store = Store(data_dir)
    try:
        ring = store.key_ring
        counts = key_id_counts(store)
        if not counts or set(counts) == {ring.active_key_id}:
            ring.add_active_key()              # a new rotation
        active = ring.active_key_id
        done = 0
        for db, purpose in _encrypted(store):
            after, found_this_pass = b"", False
            while max_records is None or done < max_records:
                limit = chunk_records if max_records is None else min(chunk_records, max_records - done)
                stale, after = _stale_after(store, db, active, after, limit)
                if not stale:
                    if not found_this_pass:
                        break                   # a whole pass found nothing left
                    after, found_this_pass = b"", False  # look again for records written meanwhile
                    continue
                found_this_pass = True
                with store.env.begin(write=True) as txn:
                    for key in stale:
                        value = txn.get(key, db=db)
                        if record_key_id(value) == active:
                            continue
                        card_id = int.from_bytes(key, "big")
                        txn.put(key, ring.encrypt(ring.decrypt(value, card_id, purpose), card_id, purpose),
                                db=db)
                        done += 1
        left = sum(n for k, n in key_id_counts(store).items() if k != active)
        return active, done, left
    finally:
        store.close()


def verify(data_dir):
    """Decrypt every stored PAN and check the PAN index leads back to its card.
    Returns (records per key id, problems)."""
    store = Store(data_dir)
    problems = []
    try:
        with store.env.begin() as txn:
            for key, value in txn.cursor(db=store.db_pans):
                card_id = int.from_bytes(key, "big")
                try:
                    pan = store.key_ring.decrypt(value, card_id)
                except Exception as exc:
                    problems.append(f"card {card_id}: cannot decrypt ({type(exc).__name__}: {exc})")
                    continue
                indexed = txn.get(store.pan_key.card_key(pan), db=store.db_pan_index)
                if indexed is None or int.from_bytes(indexed, "big") != card_id:
                    problems.append(f"card {card_id}: decrypted PAN does not lead back to it")
                elif txn.get(records.card_key(card_id), db=store.db_book) is None:
                    problems.append(f"card {card_id}: no card record")
            for key, value in txn.cursor(db=store.db_holders) if store.db_holders is not None else ():
                card_id = int.from_bytes(key, "big")
                try:
                    store.key_ring.decrypt(value, card_id, HOLDER)
                except Exception as exc:
                    problems.append(f"card {card_id}: cannot decrypt its holder's name "
                                    f"({type(exc).__name__}: {exc})")
                    continue
                if txn.get(records.card_key(card_id), db=store.db_book) is None:
                    problems.append(f"card {card_id}: a holder's name but no card record")
        return key_id_counts(store), problems
    finally:
        store.close()


def retire(data_dir, key_id):
    store = Store(data_dir)
    try:
        in_use = key_id_counts(store).get(key_id, 0)
        if in_use:
            raise KeyError_(f"data key {key_id} still protects {in_use} PANs; "
                            "finish 'cardgate keys rotate' first")
        store.key_ring.remove_key(key_id)
    finally:
        store.close()


def rewrap(data_dir, to_kek_file=None, to_pkcs11_key=None):
    """Wrap every key of data_dir under a new KEK: a file (made if missing) or another key
    of the configured PKCS#11 token (made there if missing). Returns (where the new KEK
    is, files rewrapped)."""
    old = kek_mod.of_data_dir(data_dir)
    if to_kek_file:
        new = kek_mod.file_kek(pathlib.Path(to_kek_file), pathlib.Path(data_dir), create=True)
    else:
        if not os.environ.get(kek_mod.ENV_MODULE):
            raise kek_mod.KekError(f"--to-pkcs11-key needs a token: set {kek_mod.ENV_MODULE} "
                                   "and the token's variables")
        new = kek_mod.resolve(data_dir, create=True,
                              environ={**os.environ, kek_mod.ENV_KEY: to_pkcs11_key})
    return new.where, kek_mod.rewrap(data_dir, old, new)
