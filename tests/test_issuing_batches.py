"""Batch issuing over real gRPC: cards numbered in order or drawn at random within the
range, Luhn-valid, never a number twice, stored encrypted, progress streamed per part,
and a retry giving the same cards."""
import grpc
import pytest

from cardgate.gateway.security.pan import luhn_valid
from cardgate.v1 import common_pb2, issuing_pb2

from helpers import create_range, new_id

R = common_pb2


def issue(gw, count, numbering, request_id=None, range_id=1):
    return list(gw.issuing.IssueCards(issuing_pb2.IssueCardsRequest(
        request_id=request_id or new_id(), range_id=range_id, count=count, expiry_yyyymm=209912,
        numbering=numbering)))


def pans_of(gw, progress):
    store = gw.gateway.store
    with store.env.begin() as txn:
        return [store.key_ring.decrypt(txn.get(card.card_id.to_bytes(8, "big"), db=store.db_pans),
                                       card.card_id)
                for part in progress for card in part.cards]


def test_sequential_cards_are_the_ranges_next_numbers_and_a_retry_gives_the_same(live_gateway):
    gw = live_gateway
    create_range(gw)
    request_id = new_id()
    progress = issue(gw, 1_200, issuing_pb2.CARD_NUMBERING_SEQUENTIAL, request_id)
    assert [(p.issued, p.total, len(p.cards)) for p in progress] == \
        [(500, 1200, 500), (1000, 1200, 500), (1200, 1200, 200)]
    pans = pans_of(gw, progress)
    assert [p[6:15] for p in pans] == [f"{n:09d}" for n in range(1, 1201)]
    assert all(luhn_valid(p) and p.startswith("627700") and len(p) == 16 for p in pans)
    assert all(c.result_code == R.RESULT_CODE_APPROVED for p in progress for c in p.cards)
    again = issue(gw, 1_200, issuing_pb2.CARD_NUMBERING_SEQUENTIAL, request_id)
    assert pans_of(gw, again) == pans                    # the same cards, none new
    following = pans_of(gw, issue(gw, 3, issuing_pb2.CARD_NUMBERING_SEQUENTIAL))
    assert [p[6:15] for p in following] == ["000001201", "000001202", "000001203"]


def test_random_cards_are_unique_in_range_and_never_reuse_a_number(live_gateway):
    gw = live_gateway
    create_range(gw)
    first = pans_of(gw, issue(gw, 700, issuing_pb2.CARD_NUMBERING_RANDOM))
    second = pans_of(gw, issue(gw, 700, issuing_pb2.CARD_NUMBERING_RANDOM))
    assert len(set(first) | set(second)) == 1_400
    assert all(luhn_valid(p) and p.startswith("627700") for p in first + second)
    sequential = pans_of(gw, issue(gw, 5, issuing_pb2.CARD_NUMBERING_SEQUENTIAL))
    assert not set(sequential) & set(first + second)


def test_numbers_in_order_skip_ones_already_issued_otherwise(live_gateway):
    """A range may hold cards numbered at random or by hand: numbering in order steps over
    them, and still issues as many cards as asked."""
    from helpers import issue as issue_by_hand

    from cardgate.gateway.security.pan import luhn_check_digit

    gw = live_gateway
    create_range(gw)
    taken = [f"627700{n:09d}" for n in (2, 3, 5)]
    issue_by_hand(gw, [body + str(luhn_check_digit(body)) for body in taken])
    request_id = new_id()
    progress = issue(gw, 4, issuing_pb2.CARD_NUMBERING_SEQUENTIAL, request_id)
    assert progress[-1].issued == 4
    assert all(c.result_code == R.RESULT_CODE_APPROVED for p in progress for c in p.cards)
    pans = pans_of(gw, progress)
    assert sorted(p[6:15] for p in pans) == ["000000001", "000000004", "000000006", "000000007"]
    assert sorted(pans_of(gw, issue(gw, 4, issuing_pb2.CARD_NUMBERING_SEQUENTIAL, request_id))) == \
        sorted(pans)                                   # a retry: the same cards


@pytest.mark.parametrize("count, numbering, field", [
    (0, issuing_pb2.CARD_NUMBERING_SEQUENTIAL, "count"),
    (100_001, issuing_pb2.CARD_NUMBERING_SEQUENTIAL, "count"),
    (5, 7, "numbering"),
])
def test_bad_batches_are_refused(live_gateway, count, numbering, field):
    create_range(live_gateway)
    with pytest.raises(grpc.RpcError) as caught:
        issue(live_gateway, count, numbering)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field in caught.value.details()


def test_the_range_says_how_its_cards_are_numbered_unless_the_request_does(live_gateway):
    gw = live_gateway
    assert gw.issuing.CreateCardRange(issuing_pb2.CreateCardRangeRequest(
        request_id=new_id(), range_id=3, iin_prefix="627703", pan_length=16, currency="EUR",
        name="Random", numbering=issuing_pb2.CARD_NUMBERING_RANDOM)).result_code == R.RESULT_CODE_APPROVED
    drawn = [int(p[6:15]) for p in pans_of(gw, issue(gw, 50, issuing_pb2.CARD_NUMBERING_UNSPECIFIED,
                                                      range_id=3))]
    assert drawn != list(range(1, 51)) and len(set(drawn)) == 50
    ordered = pans_of(gw, issue(gw, 3, issuing_pb2.CARD_NUMBERING_SEQUENTIAL, range_id=3))
    assert [p[6:15] for p in ordered] == ["000000001", "000000002", "000000003"]
    create_range(gw)                                               # in order, as ranges are
    assert [p[6:15] for p in pans_of(gw, issue(gw, 2, issuing_pb2.CARD_NUMBERING_UNSPECIFIED))] == \
        ["000000001", "000000002"]
    with pytest.raises(grpc.RpcError) as refused:
        gw.issuing.CreateCardRange(issuing_pb2.CreateCardRangeRequest(
            request_id=new_id(), range_id=4, iin_prefix="627704", pan_length=16, currency="EUR",
            name="Bad", numbering=9))
    assert refused.value.details().startswith("numbering")


def test_a_range_without_enough_numbers_declines_the_batch_and_issues_none(live_gateway):
    gw = live_gateway
    create_range(gw, range_id=2, prefix="62770099999", currency="EUR")     # 4 serial digits
    too_many = issue(gw, 10_000, issuing_pb2.CARD_NUMBERING_SEQUENTIAL, range_id=2)
    assert [c.result_code for p in too_many for c in p.cards] == [R.RESULT_CODE_DECLINED_RANGE_EXHAUSTED]
    assert [p[11:15] for p in pans_of(gw, issue(gw, 2, issuing_pb2.CARD_NUMBERING_SEQUENTIAL,
                                                range_id=2))] == ["0001", "0002"]


def test_production_stages_go_forward_with_their_times_and_use_activates(live_gateway):
    from helpers import issue as register, load, make_pan

    from cardgate.v1 import authorization_pb2

    gw = live_gateway
    create_range(gw)
    pan = make_pan(1)
    register(gw, [pan])

    def stage(value, request_id=None):
        return gw.issuing.SetCardStage(issuing_pb2.SetCardStageRequest(
            request_id=request_id or new_id(), pan=pan, stage=value))

    assert stage(issuing_pb2.CARD_STAGE_PERSONALIZED).stage == issuing_pb2.CARD_STAGE_PERSONALIZED
    retry = new_id()
    assert stage(issuing_pb2.CARD_STAGE_SHIPPED, retry).result_code == R.RESULT_CODE_APPROVED
    assert stage(issuing_pb2.CARD_STAGE_SHIPPED, retry).stage == issuing_pb2.CARD_STAGE_SHIPPED
    back = stage(issuing_pb2.CARD_STAGE_PERSONALIZED)
    assert back.result_code == R.RESULT_CODE_DECLINED_INVALID_STATUS_CHANGE
    balance = gw.auth.GetBalance(authorization_pb2.GetBalanceRequest(pan=pan))
    assert (balance.stage, balance.status) == (issuing_pb2.CARD_STAGE_SHIPPED, authorization_pb2.CARD_STATUS_ISSUED)
    assert load(gw, pan, 10_00).result_code == R.RESULT_CODE_APPROVED      # first use: active
    assert gw.auth.GetBalance(authorization_pb2.GetBalanceRequest(pan=pan)).status == \
        authorization_pb2.CARD_STATUS_ACTIVE
    store = gw.gateway.store
    with store.env.begin() as txn:
        card_id = int.from_bytes(txn.get(store.pan_key.card_key(pan), db=store.db_pan_index), "big")
        times = [txn.get(card_id.to_bytes(8, "big") + b"T" + bytes([s]), db=store.db_book) for s in (1, 2)]
    assert all(t is not None for t in times)
    with pytest.raises(grpc.RpcError) as caught:
        stage(issuing_pb2.CARD_STAGE_UNSPECIFIED)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
