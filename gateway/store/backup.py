"""`cardgate backup` and `cardgate restore`: a consistent, compacted copy of a data
directory taken while its gateway serves, and a new data directory made from one.

The store is copied from one LMDB read transaction (mdb_env_copy2 with compaction), so
it holds exactly what was committed when the copy began: every request acknowledged
before then, nothing half done. The data keys, the PAN index and PIN keys and the PKI
(CA, server and job-signing certificates, revocations) are copied with it, the keys as
they are stored: wrapped by the key-encryption key (kek.py), which a backup never holds.
A backup alone therefore gives no key and no card number; serving or restoring it needs
the KEK (CARDGATE_KEK_FILE, CARDGATE_KEK or the PKCS#11 token). A key ring read before
and after the store's copy is merged, so a key rotation running meanwhile cannot leave a
record under a key the backup lacks.

A backup is itself a data directory: `cardgate serve --data-dir BACKUP` starts on it,
`cardgate restore BACKUP --data-dir NEW` makes a new data directory from it and audits
it (both with the KEK of the data directory it was taken from).
"""
import datetime
import json
import pathlib
import shutil

import lmdb

from cardgate.fastcore import records
from cardgate.gateway.security import kek as kek_mod
from cardgate.gateway.security.datakeys import read_ring, write_ring
from cardgate.gateway.store.audit import audit
from cardgate.gateway.store.files import write_file
from cardgate.gateway.store.replication import APPLIED_KEY
from cardgate.gateway.store.store import REPLICATION_DB, Store

MANIFEST = "BACKUP.json"
COPIED_FOLDERS = ("keys", "pki")


class BackupError(Exception):
    pass


def _empty_destination(dest: pathlib.Path):
    if dest.exists() and any(dest.iterdir()):
        raise BackupError(f"{dest} exists and is not empty; give a new folder")
    dest.mkdir(parents=True, exist_ok=True, mode=0o700)


def _read_ring(data_dir: pathlib.Path, kek):
    path = data_dir / kek_mod.DATA_KEY_RING.path
    return read_ring(path, kek) if path.exists() else None


def _replication_seq(env, txn) -> int:
    try:
        db = env.open_db(REPLICATION_DB, txn=txn, create=False)
    except lmdb.NotFoundError:
        return 0
    found = txn.get(APPLIED_KEY, db=db)
    return int.from_bytes(found, "big") if found else 0


def backup(data_dir, dest) -> dict:
    """Copy data_dir to dest (a new folder); the manifest written beside it."""
    data_dir, dest = pathlib.Path(data_dir), pathlib.Path(dest)
    ledger = data_dir / "ledger"
    if not (ledger / "data.mdb").exists():
        raise BackupError(f"no cardgate store in {data_dir} (expected ledger/data.mdb)")
    kek = kek_mod.of_data_dir(data_dir)
    _empty_destination(dest)
    ring_before = _read_ring(data_dir, kek)
    for folder in COPIED_FOLDERS:
        if (data_dir / folder).exists():
            shutil.copytree(data_dir / folder, dest / folder, dirs_exist_ok=True)
    (dest / "ledger").mkdir(mode=0o700)
    env = lmdb.open(str(ledger), readonly=True, lock=True, max_dbs=32)
    try:
        env.copy(str(dest / "ledger"), compact=True)      # one read transaction, compacted
    finally:
        env.close()
    copied = lmdb.open(str(dest / "ledger"), readonly=True, lock=False, max_dbs=32)
    try:
        with copied.begin() as txn:
            cursor = txn.cursor(db=copied.open_db(b"journal", txn=txn, create=False))
            last_seq = records.journal_seq_of(cursor.key()) if cursor.last() else 0
            replication_seq = _replication_seq(copied, txn)
    finally:
        copied.close()
    ring_after = _read_ring(data_dir, kek)
    if ring_before and ring_after:                  # a rotation meanwhile: keep every key
        merged = {**ring_after, "keys": {**ring_before["keys"], **ring_after["keys"]}}
        write_ring(dest / kek_mod.DATA_KEY_RING.path, kek, merged)
    manifest = {"made_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "from": str(data_dir.resolve()), "store_format": records.STORE_FORMAT,
                "last_journal_seq": last_seq,
                # A replicated node's: the stream sequence the copy holds (a new follower
                # started on it replays the stream from the next one).
                "replication_seq": replication_seq,
                "store_bytes": (dest / "ledger" / "data.mdb").stat().st_size,
                "source_bytes": (ledger / "data.mdb").stat().st_size}
    write_file(dest / MANIFEST, json.dumps(manifest, indent=1).encode(), private=True)
    return manifest


def restore(backup_dir, data_dir) -> dict:
    """A new data directory from a backup, checked: (manifest, audit violations, counts)."""
    backup_dir, data_dir = pathlib.Path(backup_dir), pathlib.Path(data_dir)
    if not (backup_dir / MANIFEST).exists() or not (backup_dir / "ledger" / "data.mdb").exists():
        raise BackupError(f"{backup_dir} is not a cardgate backup (no {MANIFEST} and ledger/data.mdb)")
    _empty_destination(data_dir)
    for folder in COPIED_FOLDERS + ("ledger",):
        if (backup_dir / folder).exists():
            shutil.copytree(backup_dir / folder, data_dir / folder, dirs_exist_ok=True)
    manifest = json.loads((backup_dir / MANIFEST).read_text())
    Store(data_dir).close()                         # refuses another format, plainly
    violations, counts = audit(data_dir)
    return manifest, violations, counts
