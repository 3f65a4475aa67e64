"""The data directory: the LMDB environment, its databases, the PAN index key, and reads.

Reads run in LMDB read transactions and never wait for the writer.
"""
import json
import os
import pathlib

import lmdb

from cardgate.fastcore import ledger, records
from cardgate.gateway import limits
from cardgate.gateway.security import kek as kek_mod
from cardgate.gateway.security.datakeys import KeyRing
from cardgate.gateway.security.kek import WrappedSecret
from cardgate.gateway.security.pan import PanIndexKey
from cardgate.gateway.security.pin_blocks import TerminalPinKeys
from cardgate.gateway.zones import ZONE_NAME_BYTES

DATA_DIR_ENV = "CARDGATE_DATA_DIR"
DATA_DIR_DEFAULT = "cardgate-data"
PANS_DB = b"pans"
HOLDERS_DB = b"holders"
JOBS_DB = b"jobs"
PROBE_DB = b"probe"
ACCEPTANCE_DB = b"acceptance"
REPLICATION_DB = b"replication"


def issued_parts_prefix(issue_rid: bytes) -> bytes:
    """Jobs database keys of the card ids an IssueCards request issued, part by part
    (jobs.py exports them by the request's id, in the keys' order)."""
    return b"B" + issue_rid


def issued_part_key(issue_rid: bytes, start: int, attempt: int) -> bytes:
    return issued_parts_prefix(issue_rid) + start.to_bytes(4, "big") + bytes([attempt])


def acceptance_key(range_id: int) -> bytes:
    return b"R" + range_id.to_bytes(4, "big")


def default_data_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get(DATA_DIR_ENV, DATA_DIR_DEFAULT))


class StoreFormatError(OSError):
    """The data directory holds a store of another layout."""


class Store:
    """One data directory opened by this process."""

    def __init__(self, data_dir: pathlib.Path, *, map_size_bytes: int = limits.MAP_SIZE_BYTES_DEFAULT,
                 readonly: bool = False, sync: bool = True):
        self.data_dir = pathlib.Path(data_dir)
        self.ledger_dir = self.data_dir / "ledger"
        if readonly and not (self.ledger_dir / "data.mdb").exists():
            raise FileNotFoundError(f"no cardgate store in {self.data_dir} "
                                    "(expected ledger/data.mdb; run 'cardgate serve' first)")
        self.ledger_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # sync=True: every commit is flushed before the writer answers anyone (only
        # tests of semantics, never the gateway, turn it off).
        # writemap stays off: with sync commits it writes far more per commit.
        self.env = lmdb.open(str(self.ledger_dir), map_size=map_size_bytes, max_dbs=32,
                             max_readers=limits.MAX_READERS, sync=sync, metasync=sync,
                             writemap=False, readonly=readonly, lock=True)
        if not readonly:
            # Reader slots of processes that died (a killed worker) are freed for others.
            self.env.reader_check()
        try:
            self._check_format(readonly)
        except StoreFormatError:
            self.env.close()
            raise
        if readonly:
            self.dbs = tuple(self.env.open_db(name, create=False) for name in ledger.DB_NAMES)
        else:
            self.dbs = ledger.open_databases(self.env)
        self.keys_dir = self.data_dir / "keys"
        self.pan_key = self.pin_key = self.key_ring = self.terminal_pin_keys = None
        if not readonly:            # the keys, unwrapped by the KEK (kek.py), never stored bare
            kek = kek_mod.of_data_dir(self.data_dir)
            self.pan_key = PanIndexKey.load_or_create(
                WrappedSecret(self.data_dir, kek_mod.PAN_INDEX_KEY, kek))
            self.pin_key = PanIndexKey.load_or_create(WrappedSecret(self.data_dir, kek_mod.PIN_KEY, kek))
            self.key_ring = KeyRing.load_or_create(self.data_dir, kek)
            self.terminal_pin_keys = TerminalPinKeys.load_or_create(self.data_dir, kek)
        for name, db in zip(ledger.DB_NAMES, self.dbs):    # db_requests, db_book, ...
            setattr(self, "db_" + name.decode(), db)
        # Gateway-owned: card id -> PAN encrypted under a data key (datakeys.py).
        self.db_pans = self.env.open_db(PANS_DB, create=not readonly)
        # Gateway-owned: card id -> holder name encrypted likewise (bearer cards: none);
        # personalization jobs and the bureau's results (jobs.py).
        self.db_holders, self.db_jobs = (self._gateway_db(name, readonly) for name in (HOLDERS_DB, JOBS_DB))
        # Gateway-owned: card range -> the merchants that accept its cards (acceptance_key).
        self.db_acceptance = self._gateway_db(ACCEPTANCE_DB, readonly)
        # Gateway-owned: with replication, the last stream sequence this store applied.
        self.db_replication = self._gateway_db(REPLICATION_DB, readonly)
        # Gateway-owned, always empty: the writer's probe writes there to see whether the
        # store takes commits again.
        self.db_probe = self._gateway_db(PROBE_DB, readonly)

    def databases_by_name(self) -> dict:
        """{name: database} of every database of the store, the core's and the gateway's
        (what a replicated batch names its writes by, batch_log.py)."""
        found = dict(zip(ledger.DB_NAMES, self.dbs))
        for name, db in ((PANS_DB, self.db_pans), (HOLDERS_DB, self.db_holders),
                         (JOBS_DB, self.db_jobs), (ACCEPTANCE_DB, self.db_acceptance)):
            if db is not None:
                found[name] = db
        return found

    def _gateway_db(self, name: bytes, readonly: bool):
        """A gateway-owned database; None in a read-only store written before it existed."""
        try:
            return self.env.open_db(name, create=not readonly)
        except lmdb.NotFoundError:
            return None

    def _check_format(self, readonly: bool):
        """Refuse a store written in another layout; mark a new one with this one's."""
        config = self.env.open_db(b"config", create=not readonly)
        with self.env.begin(write=not readonly) as txn:
            found = txn.get(records.STORE_FORMAT_KEY, db=config)
            if found is None and txn.stat(config)["entries"] == 0 and not readonly:
                txn.put(records.STORE_FORMAT_KEY, str(records.STORE_FORMAT).encode(), db=config)
                return
            if found != str(records.STORE_FORMAT).encode():
                raise StoreFormatError(
                    f"{self.data_dir} holds a cardgate store of format "
                    f"{found.decode() if found else '1 (or older)'}, and this cardgate reads format "
                    f"{records.STORE_FORMAT}; no migration exists yet: keep that directory for the "
                    "cardgate that wrote it, and give this one a new --data-dir")

    def close(self):
        self.env.close()

    def set_map_size(self, map_size_bytes: int):
        self.env.set_mapsize(map_size_bytes)

    # ---- reads ---------------------------------------------------------------------

    def read_card(self, card_key: bytes):
        """(Card, records.Reply describing it) of the card with this PAN-index key, or
        None: described by the core as in every answer (balance with what is held for
        pre-authorizations, that shown as pending; a contract card's contract value and
        credit limit)."""
        with self.env.begin(buffers=False) as txn:
            found = ledger.card_view(txn, self.dbs, card_key)
        if found is None:
            return None
        return records.unpack_card(found[0]), records.unpack_reply(found[1])

    def read_card_by_id(self, card_id: int):
        with self.env.begin() as txn:
            return records.unpack_card(txn.get(records.card_key(card_id), db=self.db_book))

    def read_units_left(self, card_id: int) -> int:
        """Subscription units on the card: its open packages (ended ones, used up or
        expired by the writer within WRITER_IDLE_TICK_S, hold none)."""
        return self._read_balance(card_id, records.Slot.CARD_UNITS)

    def read_points(self, card_id: int) -> int:
        """Loyalty points on the card: its open lots, less what returns left owed (so
        below zero while points are owed)."""
        return self._read_balance(card_id, records.Slot.CARD_POINTS) + \
            self._read_balance(card_id, records.Slot.CARD_POINTS_OWED)

    def read_program(self, program_id: int):
        """(records.Program, (records.Rule, ...)) of a loyalty program, or None."""
        with self.env.begin() as txn:
            return self._program(txn, program_id)

    def read_program_of_range(self, range_id: int):
        """(records.Program, rules) of the program a card range is in, or None."""
        with self.env.begin() as txn:
            return self._program(txn, self._program_id_of_range(txn, range_id))

    def _program_id_of_range(self, txn, range_id):
        link = txn.get(records.config_key("g", range_id), db=self.db_config)
        return int.from_bytes(link, "little") if link else 0

    def _program(self, txn, program_id):
        value = txn.get(records.config_key("G", program_id), db=self.db_config)
        if value is None:
            return None
        rules = txn.get(records.config_key("E", program_id), db=self.db_config)
        return records.unpack_program(value), records.unpack_rules(rules or b"")

    def read_partner_name(self, partner_id: int) -> str:
        """A loyalty partner's name ("" for none, or one never defined)."""
        with self.env.begin() as txn:
            value = txn.get(records.config_key("N", partner_id), db=self.db_config)
        return value.rstrip(b"\0").decode("utf-8", "replace") if value else ""

    def read_membership(self, card, now_s: int):
        """(records.Program, records.Member or None, (tier, rolling total, discount_bp)
        as the next sale would see them) of a card, read at once; None when its range is
        in no program."""
        with self.env.begin() as txn:
            program = txn.get(records.config_key("G", self._program_id_of_range(txn, card.range_id)),
                              db=self.db_config)
            if program is None:
                return None
            member = txn.get(records.member_key(card.card_id), db=self.db_book)
            return (records.unpack_program(program),
                    records.unpack_member(member) if member is not None else None,
                    records.member_standing(program, member, now_s))

    def read_outlet(self, outlet_code: int):
        """records.Outlet, or None."""
        with self.env.begin() as txn:
            value = txn.get(records.config_key("O", outlet_code), db=self.db_config)
            return records.unpack_outlet(value) if value is not None else None

    def read_points_lines(self, card_id: int, lines_max: int, seq: int = None):
        """[(records.PointsLineView, records.JournalView)] of the card's points history,
        newest first (or only the line of journal entry `seq`)."""
        prefix = card_id.to_bytes(8, "big") + b"H"
        found = []
        with self.env.begin() as txn:
            if seq is not None:
                value = txn.get(records.history_key(card_id, seq), db=self.db_book)
                lines = [(records.history_key(card_id, seq), value)] if value is not None else []
            else:
                lines = []
                cursor = txn.cursor(db=self.db_book)
                # The card's last line: just before the card's 'L' (point lots) keys.
                after_history = cursor.set_range(card_id.to_bytes(8, "big") + b"I")
                if cursor.prev() if after_history else cursor.last():
                    for key, value in cursor.iterprev():
                        if key[:9] != prefix or len(lines) == lines_max:
                            break
                        lines.append((key, value))
            for key, value in lines:
                entry = records.unpack_journal_entry(txn.get(key[9:], db=self.db_journal))
                found.append((records.unpack_points_line(value), entry))
        return found

    def _read_balance(self, owner: int, slot: int) -> int:
        with self.env.begin() as txn:
            return records.unpack_account(txn.get(records.account_key(owner, slot),
                                                  db=self.db_book)).balance_minor

    def read_range(self, range_id: int):
        with self.env.begin() as txn:
            value = txn.get(records.range_key(range_id), db=self.db_config)
            return records.unpack_range(value) if value is not None else None

    def read_fleet_usage(self, card_id: int, now_s: int):
        """(profile id, records.Usage as of now_s) of a card with a profile, or None."""
        with self.env.begin(buffers=False) as txn:
            return ledger.fleet_usage(txn, self.dbs, card_id, now_s)

    def read_limit_max(self, card_id: int, limit_hit: int) -> int:
        """The maximum of the limit a reply names (its limit_hit), as the card's restriction
        profile (its own, else its contract's) sets it now; 0 when it has none."""
        if not limit_hit:
            return 0
        with self.env.begin(buffers=False) as txn:
            return self._limit_max(txn, card_id, limit_hit)

    def _limit_max(self, txn, card_id, limit_hit):
        found = ledger.fleet_usage(txn, self.dbs, card_id, 0)
        value = txn.get(records.config_key("F", found[0]), db=self.db_config) if found else None
        if value is None:
            return 0
        limits = records.unpack_profile(value).limits
        return next((maximum for (period, measure), maximum in limits.items()
                     if records.limit_index(period, measure) + 1 == limit_hit), 0)

    def read_flagged(self, since_s: int, max_results: int):
        """[(request id, Card or None, time_s, limit_hit, the limit's maximum, review
        flags, its records.RequestRecordView)]: sales approved past a soft limit, taken as
        forced captures, or approved offline (posted or not; the card may be unknown),
        oldest first, read in one transaction."""
        with self.env.begin(buffers=False) as txn:
            found = []
            for request_id, value in txn.cursor(db=self.db_reviews):
                time_s = int.from_bytes(value[8:16], "big")
                if time_s >= since_s:
                    found.append((time_s, request_id, int.from_bytes(value[:8], "big"), value[16],
                                  value[17]))
            found.sort()
            listed = []
            for time_s, request_id, card_id, limit_hit, review in found[:max_results]:
                card = txn.get(records.card_key(card_id), db=self.db_book) if card_id else None
                record = txn.get(request_id, db=self.db_requests)
                listed.append((
                    request_id, records.unpack_card(card) if card is not None else None, time_s,
                    limit_hit, self._limit_max(txn, card_id, limit_hit) if limit_hit else 0,
                    review, records.unpack_request_record(record) if record is not None else None))
            return listed

    def read_transactions(self, after: bytes, until_s: int, rows_max: int):
        """([records.Transaction], the key to read on after, or None when the period is
        done): lines of the transactions database after the key `after` (a
        records.transaction_key) and before until_s, in time order, read in one
        transaction."""
        rows = []
        with self.env.begin(buffers=False) as txn:
            cursor = txn.cursor(db=self.db_transactions)
            found = cursor.set_range(after)
            if found and cursor.key() == after:
                found = cursor.next()
            end = records.transaction_key(until_s)
            while found:
                key = cursor.key()
                if key >= end:
                    return rows, None
                rows.append(records.unpack_transaction(key, cursor.value()))
                if len(rows) == rows_max:
                    return rows, key
                found = cursor.next()
        return rows, None

    def read_journal(self, after_seq: int, rows_max: int):
        """[(seq, records.JournalView)] of the journal entries after after_seq, in order,
        at most rows_max, with the card record of each side that is a card (or None):
        {card_id: records.Card}; read in one transaction."""
        rows, cards = [], {}
        with self.env.begin(buffers=False) as txn:
            cursor = txn.cursor(db=self.db_journal)
            found = cursor.set_range(records.journal_key(after_seq + 1))
            while found and len(rows) < rows_max:
                entry = records.unpack_journal_entry(cursor.value())
                rows.append((records.journal_seq_of(cursor.key()), entry))
                for owner in (entry.debit_owner, entry.credit_owner):
                    if owner < records.CONTRACT_OWNER_BASE and owner not in cards:
                        card = txn.get(records.card_key(owner), db=self.db_book)
                        cards[owner] = records.unpack_card(card) if card is not None else None
                found = cursor.next()
        return rows, cards

    def read_request(self, request_id: bytes):
        """The records.RequestRecordView of a request still remembered, or None."""
        with self.env.begin(buffers=False) as txn:
            value = txn.get(request_id, db=self.db_requests)
        return records.unpack_request_record(value) if value is not None else None

    def read_product_name(self, code: int) -> str:
        """The name a product of the catalog was given (DefineProduct), or ""."""
        with self.env.begin(buffers=False) as txn:
            value = txn.get(records.config_key("P", code), db=self.db_config)
        return value[1:].rstrip(b"\0").decode("utf-8", "replace") if value else ""

    def read_zone_name(self, zone_id: int) -> str:
        """The IANA name of a zone the core was given (DEFINE_ZONE), or "" if none."""
        with self.env.begin(buffers=False) as txn:
            table = txn.get(records.config_key("Z", zone_id), db=self.db_config)
        return table[:ZONE_NAME_BYTES].rstrip(b"\0").decode("ascii") if table else ""

    def read_acceptance(self, range_id: int):
        """The merchant ids that accept the range's cards, or None: every merchant."""
        if self.db_acceptance is None:
            return None
        with self.env.begin() as txn:
            found = txn.get(acceptance_key(range_id), db=self.db_acceptance)
        return frozenset(json.loads(found)) if found is not None else None

    def read_admin_log(self, since_s: int = 0, until_s: int = None, actor: int = None,
                       lines_max: int = None):
        """[records.AdminLine] of operators' and bureaus' acts from since_s (to until_s,
        exclusive), oldest first; actor: only that actor code's."""
        lines = []
        with self.env.begin(buffers=False) as txn:
            cursor = txn.cursor(db=self.db_admin_log)
            found = cursor.set_range(since_s.to_bytes(8, "big"))
            while found and (lines_max is None or len(lines) < lines_max):
                line = records.unpack_admin_line(cursor.key(), cursor.value())
                if until_s is not None and line.time_s >= until_s:
                    break
                if actor is None or line.actor == actor:
                    lines.append(line)
                found = cursor.next()
        return lines

    def read_point_lots(self, card_id: int, now_s: int):
        """([(valid_until_s, points)], pending) of the card's valid point lots: what
        expires, soonest first (lots of the same second summed), and how many points still
        wait for their returns window to end."""
        by_time, pending = {}, 0
        with self.env.begin(buffers=False) as txn:
            lots = ledger.valid_point_lots(txn, self.dbs, card_id, now_s)
        for due_s, record in lots:
            lot = records.unpack_lot(record)
            if lot.available_from_s > now_s:
                pending += lot.quantity_left
            if due_s != records.LOT_NEVER:
                by_time[due_s] = by_time.get(due_s, 0) + lot.quantity_left
        return sorted(by_time.items()), pending

    def read_points_expiring_page(self, after: bytes, until_s: int, rows_max: int):
        """([(Card, points, valid_until_s)], next) of the point lots expiring after the
        expiry-index key `after` and by until_s, soonest first; next is None at the end.
        Each page is its own short read transaction."""
        rows, last = [], None
        with self.env.begin(buffers=False) as txn:
            cursor = txn.cursor(db=self.db_point_lot_expiry)
            if not cursor.set_range(after):
                return rows, None
            for key in cursor.iternext(values=False):
                if key == after:
                    continue
                valid_until_s = int.from_bytes(key[:8], "big")
                if valid_until_s > until_s:
                    return rows, None
                if len(rows) == rows_max:
                    return rows, last
                lot = records.unpack_lot(txn.get(key[8:], db=self.db_point_lots))
                last = key
                if lot.status == records.LotState.HELD:
                    continue                # a reservation's end, not its points' expiry
                card = records.unpack_card(txn.get(records.card_key(lot.card_id), db=self.db_book))
                rows.append((card, lot.quantity_left, valid_until_s))
        return rows, None
