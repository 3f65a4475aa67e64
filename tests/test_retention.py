"""Bounded store growth: with a test clock, what the store may forget (idempotency records,
tombstones, ended holds, used-up and expired lots, flagged sales) is gone once its window
has passed, in small batches of the writer; what a retry or a reference to a forgotten
request gets is what retention.py documents; cards, balances and the journal stay, and
the audit stays clean."""
import uuid

import pytest

from cardgate.fastcore import records
from cardgate.fastcore.records import Result
from cardgate.gateway.api.operations import Operations
from cardgate.gateway.store import retention
from cardgate.gateway.store.audit import audit_store
from cardgate.gateway.store.store import Store
from cardgate.gateway.store.writer import BatchingWriter
from cardgate.v1 import authorization_pb2, common_pb2

from helpers import make_pan

NOW_S = 1_790_000_000
DAY_S = retention.DAY_S
ACCEPTOR = common_pb2.Acceptor(merchant_id="m1", outlet_id="o1")


def rid():
    return str(uuid.uuid4())


def money(amount):
    return common_pb2.Money(amount_minor=amount, currency="EUR")


class Story:
    """A store and its writer on a test clock, and the requests of a card network's day."""

    def __init__(self, tmp_path, windows=retention.Windows(), name="data"):
        self.store = Store(tmp_path / name, sync=False)
        self.clock = [NOW_S]
        self.writer = BatchingWriter(self.store, clock=lambda: self.clock[0], idle_tick_s=0.05,
                                     retention_windows=windows, prune_interval_s=0).start()
        self.ops = Operations(self.store, self.writer, clock=lambda: self.clock[0])

    def close(self):
        self.writer.stop()
        self.store.close()

    def send(self, kind, message):
        return self.ops.submit_one(self.ops.pack_operation(kind, message), message.request_id)

    def purchase(self, pan, amount, request_id=None):
        return self.send("purchase", authorization_pb2.PurchaseRequest(
            request_id=request_id or rid(), pan=pan, amount=money(amount), acceptor=ACCEPTOR))

    def load(self, pan, amount, request_id=None):
        return self.send("load", authorization_pb2.LoadValueRequest(
            request_id=request_id or rid(), pan=pan, amount=money(amount), acceptor=ACCEPTOR))

    def preauthorize(self, pan, amount, hold_id):
        return self.send("preauthorize", authorization_pb2.PreAuthorizeRequest(
            request_id=hold_id, pan=pan, amount=money(amount), acceptor=ACCEPTOR))

    def complete(self, pan, hold_id, amount):
        return self.send("complete", authorization_pb2.CompletePreAuthorizationRequest(
            request_id=rid(), pan=pan, hold_id=hold_id, amount=money(amount), acceptor=ACCEPTOR))

    def refund(self, pan, amount, original):
        return self.send("refund", authorization_pb2.RefundRequest(
            request_id=rid(), pan=pan, amount=money(amount), original_request_id=original,
            acceptor=ACCEPTOR))

    def reverse(self, original):
        return self.send("reverse", authorization_pb2.ReverseRequest(
            request_id=rid(), original_request_id=original, acceptor=ACCEPTOR))

    def day_of_traffic(self):
        """Every kind of prunable record, from one day's requests; returns the ids needed."""
        self.ops.create_range(rid(), 1, "627700", 16, "EUR", "gift")
        pans = [make_pan(n) for n in range(1, 4)]
        self.ops.issue_gift_cards(rid(), 1, [(pan, 209912) for pan in pans])
        for pan in pans:
            self.load(pan, 100_00)
        sale = rid()
        assert self.purchase(pans[0], 30_00, sale).result == Result.APPROVED
        assert self.refund(pans[0], 5_00, sale).result == Result.APPROVED
        completed, lapsed, late = rid(), rid(), rid()
        for hold in (completed, lapsed, late):
            assert self.preauthorize(pans[1], 10_00, hold).result == Result.APPROVED
        assert self.complete(pans[1], completed, 8_00).result == Result.APPROVED
        assert self.reverse(rid()).result == Result.APPROVED       # a blind one: a tombstone
        self.ops.earn_points(rid(), pans[2], 70)
        self.ops.redeem_points(rid(), pans[2], 70)                  # a lot used up
        self.ops.sell_package(rid(), pans[2], 3, NOW_S + 2 * DAY_S)
        self.ops.sell_package(rid(), pans[2], 2, NOW_S + 3 * DAY_S)  # to expire
        self.ops.use_units(rid(), pans[2], 3)                       # the first used up
        self.clock[0] += 3 * 3600                  # the two open holds lapse
        self.load(pans[2], 1_00)
        forced = self.complete(pans[1], late, 10_00)                 # a forced capture:
        assert forced.result == Result.APPROVED and forced.review    # flagged for review
        self.clock[0] += 3 * DAY_S                 # the second package expires
        self.load(pans[2], 1_00)
        return pans, sale, completed

    def counts(self):
        with self.store.env.begin() as txn:
            return {name: txn.stat(getattr(self.store, "db_" + name))["entries"]
                    for name in ("requests", "holds", "packages", "point_lots", "reviews",
                                 "journal", "book")}

    def audit_clean(self):
        with self.store.env.begin() as txn:
            violations, _ = audit_store(self.store, txn)
        assert violations == []

    def balances(self, pans):
        return [self.ops.balance(pan)[1].balance_minor for pan in pans]


@pytest.fixture
def story(tmp_path):
    s = Story(tmp_path)
    yield s
    s.close()


def test_past_their_windows_records_are_forgotten_and_the_ledger_stays(story):
    pans, sale, completed = story.day_of_traffic()
    before = story.counts()
    assert min(before.values()) > 0, before
    balances = story.balances(pans)
    story.audit_clean()

    last_s = story.clock[0]                    # the traffic went from NOW_S to last_s
    story.clock[0] = NOW_S + 35 * DAY_S - 1    # inside every window: nothing goes
    story.load(pans[0], 1_00)
    kept = story.counts()
    assert kept["requests"] == before["requests"] + 1 and kept["holds"] == before["holds"]

    story.clock[0] = last_s + 35 * DAY_S + 1   # past the window of the last of it
    story.load(pans[0], 1_00)
    after = story.counts()
    # Left: the two loads just made; flagged sales stay their own 90 days.
    assert after["requests"] == 2, after
    assert (after["holds"], after["packages"], after["point_lots"]) == (0, 0, 0), after
    assert after["reviews"] == before["reviews"] == 1
    assert after["journal"] == before["journal"] + 2          # the ledger stays
    assert after["book"] == before["book"]                    # cards, accounts, histories
    assert story.balances(pans) == [balances[0] + 2_00] + balances[1:]
    story.audit_clean()

    story.clock[0] += 60 * DAY_S
    story.load(pans[0], 1_00)
    assert story.counts()["reviews"] == 0
    story.audit_clean()


def test_a_forgotten_request_id_is_a_new_request_and_references_to_it_find_nothing(story):
    pans, sale, completed = story.day_of_traffic()
    story.clock[0] += 40 * DAY_S
    story.load(pans[2], 1_00)                  # a batch: the day of traffic is pruned
    balance = story.balances(pans)
    # A retry so late cannot be told from a new request: it takes effect as one.
    again = story.purchase(pans[0], 30_00, sale)
    assert again.result == Result.APPROVED
    assert story.balances(pans)[0] == balance[0] - 30_00
    assert story.purchase(pans[0], 30_00, sale) == again      # and is remembered again
    # Nothing to complete: the hold is forgotten.
    assert story.complete(pans[1], completed, 1_00).result == Result.DECLINED_HOLD_NOT_FOUND
    balance = story.balances(pans)
    story.clock[0] += 40 * DAY_S
    story.load(pans[2], 1_00)
    # A reversal of a forgotten request moves nothing (a tombstone, as for one never seen);
    # a refund against it is declined.
    assert story.reverse(sale).result == Result.APPROVED
    assert story.refund(pans[0], 1_00, sale).result != Result.APPROVED
    assert story.balances(pans)[:2] == balance[:2]
    story.audit_clean()


def test_with_retention_off_the_store_keeps_everything(tmp_path):
    story = Story(tmp_path, windows=None)
    try:
        story.day_of_traffic()
        before = story.counts()
        story.clock[0] += 400 * DAY_S
        story.load(make_pan(1), 1_00)
        after = story.counts()
        assert after["requests"] == before["requests"] + 1
        assert {k: after[k] for k in ("holds", "packages", "point_lots", "reviews")} == \
            {k: before[k] for k in ("holds", "packages", "point_lots", "reviews")}
    finally:
        story.close()


def test_pruning_goes_in_small_batches_oldest_first_and_says_how_far_it_went(story):
    story.day_of_traffic()
    store, now_s = story.store, story.clock[0] + 40 * DAY_S
    windows = retention.Windows()
    with store.env.begin(write=True) as txn:
        assert retention.due(txn, store, now_s, windows)
        first = retention.prune(txn, store, now_s, windows, count_max=3)
        assert first == {records.RETAIN_REQUEST: 3}
        # Only part of the requests' index went: its watermark is the first one left's time.
        assert retention.pruned_through(txn, store)[records.RETAIN_REQUEST] == NOW_S
        while retention.prune(txn, store, now_s, windows, count_max=3):
            pass
        assert not retention.due(txn, store, now_s, windows)
        assert retention.pruned_through(txn, store)[records.RETAIN_REQUEST] == now_s - 35 * DAY_S
        violations, _ = audit_store(store, txn)
        assert violations == []


def test_an_idle_writer_prunes_too(story):
    pans, _, _ = story.day_of_traffic()
    story.clock[0] += 36 * DAY_S
    import time
    deadline = time.monotonic() + 10
    while story.counts()["holds"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert story.counts()["holds"] == 0 and story.counts()["requests"] == 0
    story.audit_clean()


@pytest.mark.parametrize("spec, expected", [
    ("", retention.Windows()),
    ("requests=60, reviews=never", retention.Windows(requests=60 * DAY_S, reviews=None)),
    ("off", retention.Windows(None, None, None, None, None)),
])
def test_windows_are_read_from_a_spec(spec, expected):
    assert retention.Windows.parse(spec) == expected


@pytest.mark.parametrize("spec, message", [
    ("requests=0", "not a whole number of days"),
    ("requests=-3", "not a whole number of days"),
    ("requests=1.5", "not a whole number of days"),
    ("idempotency=35", "unknown retention kind 'idempotency'"),
])
def test_a_bad_spec_is_refused_naming_what_is_wrong(spec, message):
    with pytest.raises(ValueError, match=message):
        retention.Windows.parse(spec)


@pytest.mark.parametrize("argv, message", [
    (["--retention", "requests=abc"], "retention of requests: 'abc' is not a whole number"),
    (["--retention", "idempotency=35"], "unknown retention kind 'idempotency'"),
    (["--stream-max-age-days", "0"], "'0' is not a whole number of 1 or more"),
])
def test_serve_refuses_a_bad_window_before_it_starts(argv, message, capsys):
    from cardgate.gateway.cli.main import build_parser
    with pytest.raises(SystemExit) as ended:
        build_parser().parse_args(["serve", *argv])
    assert ended.value.code == 2
    assert message in capsys.readouterr().err
