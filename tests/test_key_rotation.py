"""Card numbers at rest: encrypted under a data key with an id, rotated to a new key
while the gateway keeps answering, resumable after an interruption; the old key can
then be retired and everything still decrypts."""
import subprocess
import sys

from cardgate.gateway.store.store import Store
from cardgate.v1 import common_pb2

from conftest import LiveGateway
from helpers import create_range, issue, load, make_pan, purchase

APPROVED = common_pb2.RESULT_CODE_APPROVED


def keys(data_dir, *args):
    return subprocess.run([sys.executable, "-m", "cardgate.gateway.cli.main", "keys", *args,
                           "--data-dir", str(data_dir)], capture_output=True, text=True,
                          timeout=120)


def decrypted_pans(data_dir):
    store = Store(data_dir, readonly=False)
    try:
        with store.env.begin() as txn:
            return {int.from_bytes(k, "big"): store.key_ring.decrypt(v, int.from_bytes(k, "big"))
                    for k, v in txn.cursor(db=store.db_pans)}
    finally:
        store.close()


def test_rotation_while_serving_interrupted_then_resumed_then_old_key_retired(tmp_path):
    data_dir = tmp_path / "data"
    gw = LiveGateway(data_dir)
    try:
        pans = [make_pan(100 + i) for i in range(7)]
        create_range(gw)
        issued = issue(gw, pans)
        card_ids = [c.card_id for c in issued.cards]
        for pan in pans:
            load(gw, pan, 10_00)
        assert "7 under k1" in keys(data_dir, "verify").stdout

        # Rotation starts and is cut short after 3 records (as if interrupted).
        first = keys(data_dir, "rotate", "--max-records", "3")
        assert first.returncode == 0, first.stderr
        assert "active data key k2: re-encrypted 3 card numbers and holder names, 4 left" in first.stdout
        verify = keys(data_dir, "verify")
        assert verify.returncode == 0 and "4 under k1, 3 under k2" in verify.stdout
        retire_early = keys(data_dir, "retire", "k1")
        assert retire_early.returncode == 2 and "still protects 4" in retire_early.stderr

        # The gateway answered throughout, and new cards already use the new key.
        assert purchase(gw, pans[0], 1_00).result_code == APPROVED
        late = make_pan(200)
        issue(gw, [late])

        rerun = keys(data_dir, "rotate")
        assert "active data key k2: re-encrypted 4 card numbers and holder names, 0 left" in rerun.stdout
        assert keys(data_dir, "retire", "k1").returncode == 0
        verify = keys(data_dir, "verify")
        assert verify.returncode == 0 and "8 under k2" in verify.stdout
        assert purchase(gw, pans[1], 1_00).result_code == APPROVED
    finally:
        gw.close()
    assert decrypted_pans(data_dir) == {**dict(zip(card_ids, pans)), max(card_ids) + 1: late}

    # A further rotation starts a new key.
    assert "active data key k3: re-encrypted 8" in keys(data_dir, "rotate").stdout


def test_card_numbers_are_not_in_the_store_in_clear(tmp_path):
    data_dir = tmp_path / "data"
    gw = LiveGateway(data_dir)
    try:
        pans = [make_pan(300 + i) for i in range(3)]
        create_range(gw)
        issue(gw, pans)
        for pan in pans:
            load(gw, pan, 5_00)
            purchase(gw, pan, 1_00)
    finally:
        gw.close()
    raw = (data_dir / "ledger" / "data.mdb").read_bytes()
    for pan in pans:
        assert pan.encode() not in raw
        assert bytes.fromhex(pan.zfill(20)) not in raw        # nor as packed digits
    assert len(decrypted_pans(data_dir)) == 3


def test_malformed_pan_records_are_refused_clearly(tmp_path):
    """Regressions found by benchmarks/fuzz_parsers.py."""
    import pytest

    from cardgate.gateway.security.datakeys import KeyRing, record_key_id
    from cardgate.gateway.security.kek import LocalKek
    ring = KeyRing.load_or_create(tmp_path, LocalKek(b"\x01" * 32, "test"))
    good = ring.encrypt("6277000000000018", 5)
    for bad in (b"", b"\x01", b"\x01?", b"\x02" + good[1:], good[:20], good[:2] + b"\xff" * 40):
        with pytest.raises(ValueError):
            record_key_id(bad) if len(bad) < 3 else ring.decrypt(bad, 5)
    assert ring.decrypt(good, 5) == "6277000000000018"


def test_holder_names_rotate_with_the_card_numbers(tmp_path):
    from helpers import new_id

    from cardgate.gateway.security.datakeys import HOLDER
    from cardgate.v1 import issuing_pb2

    data_dir = tmp_path / "data"
    gw = LiveGateway(data_dir)
    try:
        create_range(gw)
        list(gw.issuing.IssueCards(issuing_pb2.IssueCardsRequest(
            request_id=new_id(), range_id=1, expiry_yyyymm=209912, holder_names=["Ada Lovelace", "Alan Turing"],
            numbering=issuing_pb2.CARD_NUMBERING_SEQUENTIAL)))
        issue(gw, [make_pan(400)])                                  # a bearer card: no name
        assert "5 under k1" in keys(data_dir, "verify").stdout      # 3 PANs, 2 names
        assert "re-encrypted 5 card numbers and holder names, 0 left" in keys(data_dir, "rotate").stdout
        assert keys(data_dir, "retire", "k1").returncode == 0
        verify = keys(data_dir, "verify")
        assert verify.returncode == 0 and "5 under k2" in verify.stdout, verify.stdout
    finally:
        gw.close()
    store = Store(data_dir)
    try:
        with store.env.begin() as txn:
            names = sorted(store.key_ring.decrypt(v, int.from_bytes(k, "big"), HOLDER)
                           for k, v in txn.cursor(db=store.db_holders))
    finally:
        store.close()
    assert names == ["ADA LOVELACE", "ALAN TURING"]
