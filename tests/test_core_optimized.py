"""The core's checks run whatever the interpreter's flags: under `python -O` (which drops
`assert`, Cython's included) the same story gets the same answers and leaves a ledger the
audit passes. Before, a valid EUR load came back CURRENCY_MISMATCH under -O, because the
read that filled the account sat inside an assert.
"""
import json
import os
import pathlib
import subprocess
import sys

import pytest

from cardgate.fastcore.records import Result

FASTCORE = pathlib.Path(__file__).resolve().parent.parent / "fastcore"

# A card's story told to the core directly, printed as JSON: every reply's result and
# balances, then what the audit says of the store it leaves.
STORY = r'''
import json, sys
from cardgate.fastcore import ledger, records
from cardgate.fastcore.records import Op
from cardgate.gateway.store.audit import audit
from cardgate.gateway.store.store import Store

NOW_S, NOW_YYYYMM = 1_790_000_000, 202609
data_dir, key, other = sys.argv[1], b"\x07" * 32, b"\x08" * 32
ids = iter(range(1, 1000))
def rid(): return next(ids).to_bytes(16, "big")
store = Store(data_dir, sync=False, map_size_bytes=64 << 20)
replies = []
def apply(*packed):
    with store.env.begin(write=True) as txn:
        out = records.unpack_replies(ledger.apply_batch(txn, store.dbs, b"".join(packed),
                                                        NOW_S, NOW_YYYYMM))
    replies.extend([r.op, r.result, r.approved_minor, r.balance_minor, r.pending_minor] for r in out)
    return out
apply(records.pack_request(Op.CREATE_RANGE, rid(), range_id=1, currency="EUR",
                           iin_prefix=627700, iin_digits=6, pan_length=16))
for k, last4 in ((key, 1234), (other, 5678)):
    apply(records.pack_request(Op.ISSUE_CARD, rid(), card_key=k, range_id=1, expiry_yyyymm=209912,
                               pan_first6=627700, pan_last4=last4, pan_length=16))
load = rid()
apply(records.pack_request(Op.LOAD, load, card_key=key, currency="EUR", amount_minor=70_00))
sale = rid()
apply(records.pack_request(Op.PURCHASE, sale, card_key=key, currency="EUR", amount_minor=12_50))
refund = rid()
apply(records.pack_request(Op.REFUND, refund, card_key=key, currency="EUR", amount_minor=2_50,
                           ref_request_id=sale))
apply(records.pack_request(Op.PURCHASE, rid(), card_key=key, currency="EUR", amount_minor=1_000_00))
hold = rid()
apply(records.pack_request(Op.PREAUTH, hold, card_key=key, currency="EUR", amount_minor=50_00))
apply(records.pack_request(Op.COMPLETE, rid(), card_key=key, currency="EUR", amount_minor=30_00,
                           ref_request_id=hold))
apply(records.pack_request(Op.EARN_POINTS, rid(), card_key=key, currency=records.POINTS_ASSET,
                           amount_minor=120, valid_until_s=NOW_S + 86400))
apply(records.pack_request(Op.REDEEM_POINTS, rid(), card_key=key, currency=records.POINTS_ASSET,
                           amount_minor=100))
apply(records.pack_request(Op.TRANSFER_POINTS, rid(), card_key=key, currency=records.POINTS_ASSET,
                           amount_minor=20, payload=other))
apply(records.pack_request(Op.REVERSAL, rid(), card_key=key, ref_request_id=refund))
apply(records.pack_request(Op.REVERSAL, rid(), card_key=key, ref_request_id=load))  # 67.50 > 27.50
store.close()
violations, _ = audit(data_dir)
print(json.dumps({"optimize": sys.flags.optimize, "replies": replies, "violations": violations}))
'''


def _tell(tmp_path, name, optimize):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONOPTIMIZE"}
    if optimize:
        env["PYTHONOPTIMIZE"] = "1"
    done = subprocess.run([sys.executable, "-c", STORY, str(tmp_path / name)], env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_core_answers_the_same_under_python_O(tmp_path):
    plain, optimized = _tell(tmp_path, "plain", False), _tell(tmp_path, "optimized", True)
    assert (plain["optimize"], optimized["optimize"]) == (0, 1)
    assert plain["violations"] == [] and optimized["violations"] == []
    approved, short = Result.APPROVED, Result.DECLINED_INSUFFICIENT_FUNDS
    # range, 2 cards, load, purchase, refund, a purchase too big, hold, completion, points
    # earned, redeemed, transferred, the refund reversed, the load's reversal too big
    assert [r[1] for r in optimized["replies"]] == [approved] * 6 + [short] + [approved] * 6 + [short]
    assert optimized["replies"][3][2:4] == [70_00, 70_00], "a valid EUR load under -O"
    assert optimized["replies"] == plain["replies"]


@pytest.mark.parametrize("source", sorted((FASTCORE / "ledger").glob("*.pyx")) + [FASTCORE / "ledger.pyx"],
                         ids=lambda p: p.name)
def test_no_check_of_the_ledger_is_an_assert(source):
    """`assert` is dropped under -O: the ledger checks with require() or if/raise."""
    lines = [f"{source.name}:{n}" for n, line in enumerate(source.read_text().splitlines(), 1)
             if line.lstrip().startswith("assert ")]
    assert not lines, lines


def test_the_oracle_property_test_checks_under_python_O(tmp_path):
    """The oracle's property test (tests/test_oracle.py) once more with PYTHONOPTIMIZE=1:
    its checks are check() calls, not asserts, so they still run; a planted mismatch
    (ORACLE_PLANT: the oracle believes loads are refused) must still fail it."""
    env = {**os.environ, "PYTHONOPTIMIZE": "1", "ORACLE_EXAMPLES": "25"}
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "--basetemp", str(tmp_path / "run"), str(pathlib.Path(__file__).parent / "test_oracle.py")]
    passed = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600,
                            stdin=subprocess.DEVNULL)
    assert passed.returncode == 0, passed.stdout[-3000:] + passed.stderr[-3000:]
    assert "1 passed" in passed.stdout
    planted = subprocess.run(args + ["--basetemp", str(tmp_path / "planted")],
                             env={**env, "ORACLE_PLANT": "1"}, capture_output=True, text=True,
                             timeout=600, stdin=subprocess.DEVNULL)
    assert planted.returncode == 1 and "1 failed" in planted.stdout, planted.stdout[-3000:]
