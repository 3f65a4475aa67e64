"""Offline check of the ledger invariants (DESIGN.md) on a data directory.

1. per currency the journal sums to zero and every account balance equals its entries;
2. no account with a no-overdraft rule is below zero, holds included, and no contract
   account is drawn past its credit limit;
3. a request id takes effect at most once (one run of journal entries, matching its
   idempotency record), and refund totals match the refunds still standing;
4. a hold ends (completed, voided, reversed or expired) exactly once, completion never
   exceeds it, and each held account equals the sum of its open holds; a fleet card's
   reserved usage equals what its open holds reserve.

Records past their retention window may be gone (retention.py): a journal entry older
than its kind's watermark may name a request, hold or lot that was pruned, and a request
id whose record was pruned may take effect again (a retry so late is a new request).
"""
import collections
from typing import Callable, NamedTuple

from cardgate.fastcore import records
from cardgate.fastcore.records import HoldState, LotState, Op, Result, Slot
from cardgate.gateway.security.pan import mask_parts
from cardgate.gateway.store import retention
from cardgate.gateway.store.store import Store


def _account_name(owner, slot, cards):
    if owner >= records.SYSTEM_OWNER_BASE:
        return f"range {owner - records.SYSTEM_OWNER_BASE} {Slot(slot).name.lower()} account"
    if owner >= records.CONTRACT_OWNER_BASE:
        return f"contract {owner - records.CONTRACT_OWNER_BASE} {Slot(slot).name.lower()} account"
    card = cards.get(owner)
    masked = mask_parts(card.pan_first6, card.pan_last4, card.pan_length) if card else "?"
    return f"card {owner} ({masked}) {Slot(slot).name.lower()} account"


def audit(data_dir) -> tuple[list[str], dict]:
    """(violations, counts). No violations means every invariant holds."""
    store = Store(data_dir, readonly=True)
    try:
        with store.env.begin() as txn:
            return audit_store(store, txn)
    finally:
        store.close()


def audit_store(store, txn):
    """audit() of an open store, inside a transaction of the caller's."""
    violations = []
    cards, accounts, lot_index = {}, {}, set()
    statements = collections.Counter()          # card -> what its points history adds up to
    for key, value in txn.cursor(db=store.db_book):
        kind, owner, detail = records.parse_book_key(key)
        if kind == "card":
            cards[owner] = records.unpack_card(value)
        elif kind == "account":
            accounts[(owner, detail)] = records.unpack_account(value)
        elif kind == "point_lot":
            lot_index.add((owner, *detail))
        elif kind == "points_history":
            statements[owner] += records.unpack_points_line(value).points

    computed = collections.defaultdict(lambda: [0, 0, 0])   # balance, credits, debits
    runs = {}                # request id -> (first, last seq, time of the last)
    pruned = retention.pruned_through(txn, store)
    requests_pruned_s = pruned.get(records.RETAIN_REQUEST, 0)
    forced = collections.Counter()       # (owner, slot) -> what forced posts took from it
    forced_kinds = collections.Counter()  # FORCED_POSTS' names -> what they took in all
    # Entries the writer posts when time ends a hold or package: op -> id -> seqs.
    timed_ends = {Op.HOLD_EXPIRY: {}, Op.PACKAGE_EXPIRY: {}, Op.POINTS_EXPIRY: {},
                  Op.POINTS_HOLD_EXPIRY: {}}
    expected_seq = 1
    entries = 0
    for key, value in txn.cursor(db=store.db_journal):
        seq = records.journal_seq_of(key)
        entry = records.unpack_journal_entry(value)
        entries += 1
        if seq != expected_seq:
            violations.append(f"journal: expected entry {expected_seq}, found {seq} (gap or reorder)")
        expected_seq = seq + 1
        forced_kind = FORCED_POSTS.get((entry.reason, entry.op))
        if forced_kind is not None:
            forced[(entry.debit_owner, entry.debit_slot)] += entry.amount_minor
            forced_kinds[forced_kind] += entry.amount_minor
        if entry.amount_minor <= 0:
            violations.append(f"journal {seq}: amount {entry.amount_minor} is not positive")
        for owner, slot, sign in ((entry.debit_owner, entry.debit_slot, -1),
                                  (entry.credit_owner, entry.credit_slot, 1)):
            acc = accounts.get((owner, slot))
            if acc is None:
                violations.append(f"journal {seq}: posts to a missing account (owner {owner}, slot {slot})")
            elif acc.currency != entry.currency:
                violations.append(f"journal {seq}: {entry.currency} posted to "
                                  f"{_account_name(owner, slot, cards)} in {acc.currency}")
            c = computed[(owner, slot)]
            c[0] += sign * entry.amount_minor
            c[1 if sign > 0 else 2] += entry.amount_minor
        if entry.op in timed_ends:                 # posted by the writer, not a request
            timed_ends[entry.op].setdefault(entry.request_id, []).append(entry.time_s)
            continue
        run = runs.get(entry.request_id)
        if run is None or (run[1] != seq - 1 and run[2] < requests_pruned_s):
            # (a request id reused after its record was pruned: a new request)
            runs[entry.request_id] = (seq, seq, entry.time_s)
        elif run[1] != seq - 1:
            violations.append(f"request {entry.request_id.hex()} took effect more than once "
                              f"(journal entries {run[0]}..{run[1]} and {seq})")
        else:
            runs[entry.request_id] = (run[0], seq, entry.time_s)

    per_currency = collections.Counter()
    owing = collections.Counter()       # currency -> card and contract value below zero
    for (owner, slot), acc in accounts.items():
        name = _account_name(owner, slot, cards)
        balance, credits, debits = computed.get((owner, slot), (0, 0, 0))
        per_currency[acc.currency] += acc.balance_minor
        if acc.balance_minor != balance:
            violations.append(f"{name}: balance {acc.balance_minor} but its journal entries "
                              f"sum to {balance}")
        if (acc.credits_minor_total, acc.debits_minor_total) != (credits, debits):
            violations.append(f"{name}: lifetime totals disagree with the journal")
        if acc.flags & records.ACCOUNT_FLAG_NO_OVERDRAFT and \
                acc.balance_minor - acc.pending_minor < -forced.get((owner, slot), 0):
            violations.append(f"{name}: available {acc.balance_minor - acc.pending_minor} is below "
                              "zero on a no-overdraft account, past what forced posts took")
        if acc.balance_minor < 0 and slot == Slot.CARD_VALUE:     # (forced posts)
            owing[acc.currency] -= acc.balance_minor
        if owner < records.SYSTEM_OWNER_BASE and slot != Slot.CARD_SALES_ELSEWHERE and \
                abs(acc.balance_minor) > records.BALANCE_MINOR_MAX:
            violations.append(f"{name}: {acc.balance_minor} is past the most a card holds")
        if slot == Slot.CARD_POINTS_OWED and acc.balance_minor > 0:
            violations.append(f"{name}: owes {-acc.balance_minor} points, a credit")
        if records.CONTRACT_OWNER_BASE <= owner < records.SYSTEM_OWNER_BASE and slot == Slot.CARD_VALUE:
            contract = _contract(txn, store, owner - records.CONTRACT_OWNER_BASE)
            if contract is None:
                violations.append(f"{name}: no such contract")
            elif acc.balance_minor < -contract.credit_limit_minor - forced.get((owner, slot), 0):
                violations.append(f"{name}: {acc.balance_minor} is past its credit limit of "
                                  f"{contract.credit_limit_minor} and what forced posts took")
    for currency, total in sorted(per_currency.items()):
        if total != 0:
            violations.append(f"{currency}: account balances sum to {total}, not zero")

    for card_id, card in cards.items():
        if (card_id, Slot.CARD_VALUE) not in accounts:
            violations.append(f"card {card_id}: has no value account")
    for key, value in txn.cursor(db=store.db_pan_index):
        if int.from_bytes(value, "big") not in cards:
            violations.append(f"PAN index entry {key[:4].hex()}... points at missing card "
                              f"{int.from_bytes(value, 'big')}")

    request_count, forgotten = _audit_requests(store, txn, runs, requests_pruned_s, violations)
    for timed in (HOLDS, PACKAGES, POINT_LOTS):
        _audit_timed(timed, txn, store, accounts, cards, timed_ends[timed.end_op],
                     pruned.get(timed.retain_kind, 0), violations)
    _audit_point_lot_index(txn, store, lot_index, violations)
    for card_id in cards:
        points = sum(accounts[(card_id, slot)].balance_minor
                     for slot in (Slot.CARD_POINTS, Slot.CARD_POINTS_OWED) if (card_id, slot) in accounts)
        if statements[card_id] != points:
            violations.append(f"card {card_id}: its statement adds up to {statements[card_id]} "
                              f"points, its balance is {points}")
    _audit_reservations_timed_out(txn, store, timed_ends[Op.POINTS_HOLD_EXPIRY], forgotten,
                                  violations)
    _audit_reservations(txn, store, violations)
    counts = {"cards": len(cards), "accounts": len(accounts), "journal_entries": entries,
              "requests": request_count, **{kind: forced_kinds[kind] for kind in
                                             FORCED_POSTS.values()},
              "owing_minor": dict(sorted(owing.items()))}
    return violations, counts


def _contract(txn, store, contract_id):
    value = txn.get(records.config_key("C", contract_id), db=store.db_config)
    return records.unpack_contract(value) if value is not None else None


def _audit_reservations(txn, store, violations):
    """Each fleet card's reserved usage is what its open counted holds reserve."""
    reserved = collections.defaultdict(lambda: [0, 0, 0])
    for _, value in txn.cursor(db=store.db_holds):
        hold = records.unpack_hold(value)
        if hold.status == HoldState.OPEN and hold.counted:
            for m, amount in enumerate((hold.held_minor, hold.volume_ml, 1)):
                reserved[hold.card_id][m] += amount
    for key, value in txn.cursor(db=store.db_usage):
        card_id = int.from_bytes(key, "big")
        pending = list(records.unpack_usage(value).pending)
        if pending != reserved.pop(card_id, [0, 0, 0]):
            violations.append(f"card {card_id}: usage reserves {pending} (money, ml, count) but "
                              "its open holds do not")
    for card_id in reserved:
        violations.append(f"card {card_id}: open holds reserve fleet usage it has no record of")


def _audit_requests(store, txn, runs, requests_pruned_s, violations):
    """(records, ids of requests whose records were pruned)."""
    refunded = collections.Counter()
    purchases = {}
    count = 0
    for request_id, value in txn.cursor(db=store.db_requests):
        count += 1
        rec = records.unpack_request_record(value)
        if rec.flags & records.REQUEST_FLAG_TOMBSTONE:
            # (posted under a record since pruned, then reversed as never seen: no fault)
            if request_id in runs and runs[request_id][2] >= requests_pruned_s:
                violations.append(f"request {request_id.hex()}: reversed before arrival, yet posted")
            continue
        run = runs.pop(request_id, None)
        posted = rec.reply.journal_seq != 0
        if posted and (run is None or not run[0] <= rec.reply.journal_seq <= run[1]):
            violations.append(f"request {request_id.hex()}: answer names journal entry "
                              f"{rec.reply.journal_seq} but the journal disagrees")
        if not posted and run is not None:
            violations.append(f"request {request_id.hex()}: posted to the journal but its answer "
                              "says nothing was posted")
        took_effect = rec.reply.result in (Result.APPROVED, Result.PARTIALLY_APPROVED)
        if not took_effect and posted:
            violations.append(f"request {request_id.hex()}: declined yet posted")
        if rec.request.op in (Op.PURCHASE, Op.COMPLETE, Op.LOYALTY_SALE) and took_effect:
            purchases[request_id] = rec
        if (rec.request.op == Op.REFUND and rec.reply.result == Result.APPROVED
                and not rec.flags & records.REQUEST_FLAG_REVERSED):
            refunded[rec.request.ref_request_id] += rec.reply.approved_minor
    forgotten = set()
    for request_id, (_, _, time_s) in runs.items():
        if time_s < requests_pruned_s:
            forgotten.add(request_id)
        else:
            violations.append(f"journal entries of request {request_id.hex()} have no request "
                              "record")
    for request_id, rec in purchases.items():
        if rec.refunded_minor != refunded.get(request_id, 0):
            violations.append(f"purchase {request_id.hex()}: records {rec.refunded_minor} refunded "
                              f"but its standing refunds sum to {refunded.get(request_id, 0)}")
        if rec.refunded_minor > rec.reply.approved_minor:
            violations.append(f"purchase {request_id.hex()}: refunded more than it charged")
    return count, forgotten


class _Timed(NamedTuple):
    """Records that time can end (holds, packages), and how to check them."""
    what: str
    db: str                 # Store attributes of the records and of their expiry index
    index_db: str
    unpack: Callable
    states: type
    end_op: int             # the journal op of their end by time
    card_slot: int          # the card account that holds what open ones keep
    owner: Callable         # record -> the owner of that account (a card or a contract)
    due_s: Callable         # record -> the time in its expiry-index key
    open_amount: Callable   # record -> what it keeps on the card while open
    within: Callable        # record -> (part, whole): 0 <= part <= whole must hold
    timed_out: Callable     # record -> ended by time (one expiry entry in the journal)
    retain_kind: bytes      # their kind in the retention index, once ended
    held_state: int = 0     # a state also in the expiry index (points reserved), if any


# Journal postings that may take a card below zero, by (reason, op): the audit's name.
FORCED_POSTS = {(records.JOURNAL_REASON_FORCED_CAPTURE, Op.COMPLETE): "forced_captures_minor",
                (records.JOURNAL_REASON_OFFLINE_SALE, Op.PURCHASE): "offline_sales_minor"}

HOLDS = _Timed("hold", "db_holds", "db_hold_expiry", records.unpack_hold, HoldState,
               Op.HOLD_EXPIRY, Slot.CARD_HELD, lambda h: h.value_owner, lambda h: h.expires_s,
               lambda h: h.held_minor,
               lambda h: (h.completed_minor, h.held_minor),
               # a hold completed late (a forced capture) had expired first
               lambda h: h.status == HoldState.EXPIRED or h.forced, records.RETAIN_HOLD)
PACKAGES = _Timed("package", "db_packages", "db_package_expiry", records.unpack_lot,
                  LotState, Op.PACKAGE_EXPIRY, Slot.CARD_UNITS, lambda p: p.card_id,
                  lambda p: p.valid_until_s or records.LOT_NEVER,
                  lambda p: p.quantity_left, lambda p: (p.quantity_left, p.quantity_total),
                  lambda p: p.status == LotState.EXPIRED, records.RETAIN_PACKAGE)
POINT_LOTS = PACKAGES._replace(
    what="point lot", db="db_point_lots", index_db="db_point_lot_expiry", end_op=Op.POINTS_EXPIRY,
    card_slot=Slot.CARD_POINTS, held_state=LotState.HELD, retain_kind=records.RETAIN_POINT_LOT,
    due_s=lambda p: p.held_until_s if p.status == LotState.HELD else p.valid_until_s or records.LOT_NEVER)


def _audit_reservations_timed_out(txn, store, ends, forgotten, violations):
    """Each reservation the writer released by time says so, and only those (unless its
    record was pruned)."""
    for reserve_id in ends:
        value = txn.get(reserve_id, db=store.db_requests)
        if value is None and reserve_id in forgotten:
            continue
        if value is None or not records.unpack_request_record(value).flags & records.REQUEST_FLAG_TIMED_OUT:
            violations.append(f"journal releases reservation {reserve_id.hex()} by time, but it "
                              "did not time out")


def _audit_point_lot_index(txn, store, lot_index, violations):
    """Each card's index of its point lots in the book names exactly its open lots."""
    expected = set()
    for lot_id, value in txn.cursor(db=store.db_point_lots):
        lot = records.unpack_lot(value)
        if lot.status == LotState.OPEN:
            expected.add((lot.card_id, lot.valid_until_s or records.LOT_NEVER, bytes(lot_id)))
    for card_id, _, lot_id in sorted(expected - lot_index):
        violations.append(f"point lot {lot_id.hex()}: open but not in card {card_id}'s index")
    for card_id, _, lot_id in sorted(lot_index - expected):
        violations.append(f"card {card_id}'s index names point lot {lot_id.hex()}, not open")


def _audit_timed(timed, txn, store, accounts, cards, ends, pruned_s, violations):
    """Open ones are in the expiry index and ended ones not; each that expired has one
    expiry entry in the journal; the card's account equals what its open ones keep (and
    its held points what its reservations hold)."""
    kept, held = collections.Counter(), collections.Counter()
    indexed = {bytes(k) for k, _ in txn.cursor(db=getattr(store, timed.index_db))}
    for record_id, value in txn.cursor(db=getattr(store, timed.db)):
        record = timed.unpack(value)
        name = f"{timed.what} {record_id.hex()}"
        state = timed.states(record.status).name
        is_open = record.status == timed.states.OPEN
        if is_open:
            kept[timed.owner(record)] += timed.open_amount(record)
        elif record.status == timed.held_state:         # a points reservation
            held[timed.owner(record)] += timed.open_amount(record)
        is_due = is_open or record.status == timed.held_state
        if is_due != (timed.due_s(record).to_bytes(8, "big") + record_id in indexed):
            violations.append(f"{name}: {state} but "
                              f"{'missing from' if is_due else 'still in'} the expiry index")
        part, whole = timed.within(record)
        if not 0 <= part <= whole:
            violations.append(f"{name}: {part} of {whole}")
        expired = len(ends.pop(record_id, []))
        if timed.timed_out(record) != (expired == 1) or expired > 1:
            violations.append(f"{name}: {state} with {expired} expiry entries in the journal")
    for record_id, times in ends.items():
        if max(times) >= pruned_s:              # (else it ended before its kind's watermark)
            violations.append(f"journal expires {timed.what} {record_id.hex()}, which does "
                              "not exist")
    for (owner, slot), acc in accounts.items():
        if slot == Slot.CARD_POINTS_HELD and timed.held_state and acc.balance_minor != held[owner]:
            violations.append(f"{_account_name(owner, slot, cards)}: {acc.balance_minor} but its "
                              f"reservations hold {held[owner]}")
        if slot == timed.card_slot and acc.balance_minor != kept.get(owner, 0):
            violations.append(f"{_account_name(owner, slot, cards)}: {acc.balance_minor} "
                              f"but its open {timed.what}s keep {kept.get(owner, 0)}")
