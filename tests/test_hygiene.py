"""A whole scenario with known card numbers and PINs: no full PAN and no PIN appears in
anything the gateway says — its log lines (at DEBUG), its answers, its error texts —
nor in clear in its store."""
import subprocess
import sys
import time

import grpc
import pytest

from cardgate.gateway.cli.channels import open_channel
from cardgate.gateway.cli.demo import DEMO_DIESEL, clients_dir
from cardgate.v1 import (authorization_pb2, authorization_pb2_grpc, common_pb2, fleet_pb2,
                         fleet_pb2_grpc, issuing_pb2, issuing_pb2_grpc, loyalty_pb2,
                         loyalty_pb2_grpc)

from gateway_process import GatewayProcess
from helpers import eur, make_pan, new_id

PANS = [make_pan(424242 + i) for i in range(3)]
# Long enough that a match by chance in hex serials or UUIDs is out of the question.
PINS = ["7391648", "58204716", "90317265"]

pytestmark = pytest.mark.slow


def test_no_pan_and_no_pin_in_logs_answers_errors_or_store(tmp_path):
    data_dir = tmp_path / "data"
    gateway = GatewayProcess(data_dir, "--card-per-minute", "8")
    seen = []                                   # every text the gateway gave a client

    def call(fn, request):
        try:
            answer = fn(request, timeout=10)
            seen.append(str(answer))
            return answer
        except grpc.RpcError as exc:
            seen.append(f"{exc.code()} {exc.details()}")
            return None

    try:
        certs = clients_dir(data_dir)
        terminal = authorization_pb2_grpc.AuthorizationServiceStub(
            open_channel(gateway.address, certs, "demo-terminal"))
        bureau = issuing_pb2_grpc.IssuingServiceStub(open_channel(gateway.address, certs, "demo-bureau"))
        fleet = fleet_pb2_grpc.FleetServiceStub(open_channel(gateway.address, certs, "demo-operator"))
        points = loyalty_pb2_grpc.LoyaltyServiceStub(open_channel(gateway.address, certs, "demo-terminal"))
        operator_points = loyalty_pb2_grpc.LoyaltyServiceStub(
            open_channel(gateway.address, certs, "demo-operator"))
        diesel = common_pb2.ProductLine(product_code=DEMO_DIESEL, volume_ml=10_000, amount_minor=5_00)
        call(bureau.IssueGiftCards, issuing_pb2.IssueGiftCardsRequest(
            request_id=new_id(), range_id=1,
            cards=[issuing_pb2.GiftCardToIssue(pan=p, expiry_yyyymm=209912) for p in PANS]))
        for pan, pin in zip(PANS, PINS):
            call(bureau.SetCardPin, issuing_pb2.SetCardPinRequest(request_id=new_id(), pan=pan, pin=pin))
            call(terminal.LoadValue, authorization_pb2.LoadValueRequest(
                request_id=new_id(), pan=pan, amount=eur(50_00)))
            pay_id = new_id()
            call(terminal.Purchase, authorization_pb2.PurchaseRequest(
                request_id=pay_id, pan=pan, amount=eur(10_00), pin=pin))
            call(terminal.Purchase, authorization_pb2.PurchaseRequest(     # wrong PIN
                request_id=new_id(), pan=pan, amount=eur(10_00), pin=pin[::-1]))
            call(terminal.Purchase, authorization_pb2.PurchaseRequest(     # malformed PIN
                request_id=new_id(), pan=pan, amount=eur(10_00), pin=pin + "x"))
            call(terminal.Refund, authorization_pb2.RefundRequest(
                request_id=new_id(), pan=pan, amount=eur(99_00), original_request_id=pay_id))
            call(terminal.Purchase, authorization_pb2.PurchaseRequest(     # reused id
                request_id=pay_id, pan=pan, amount=eur(11_00), pin=pin))
            call(terminal.GetBalance, authorization_pb2.GetBalanceRequest(pan=pan))
            call(bureau.SetCardPin, issuing_pb2.SetCardPinRequest(         # too short a PIN
                request_id=new_id(), pan=pan, pin=pin[:3]))
            call(terminal.Purchase, authorization_pb2.PurchaseRequest(     # over the velocity limit?
                request_id=new_id(), pan=pan, amount=eur(1), pin=pin))
            call(terminal.Purchase, authorization_pb2.PurchaseRequest(     # another outlet
                request_id=new_id(), pan=pan, amount=eur(1_00), pin=pin,
                acceptor={"outlet_id": "elsewhere"}))
            call(terminal.Purchase, authorization_pb2.PurchaseRequest(     # fails Luhn
                request_id=new_id(), pan=pan[:-1] + str((int(pan[-1]) + 1) % 10), amount=eur(1_00)))
            call(bureau.IssueGiftCards, issuing_pb2.IssueGiftCardsRequest(  # issued twice
                request_id=new_id(), range_id=1, cards=[issuing_pb2.GiftCardToIssue(pan=pan, expiry_yyyymm=209912)]))
            call(fleet.AssignCard, fleet_pb2.AssignCardRequest(             # the demo fleet profile
                request_id=new_id(), pan=pan, profile_id=1))
            call(terminal.Purchase, authorization_pb2.PurchaseRequest(     # no odometer
                request_id=new_id(), pan=pan, amount=eur(5_00), lines=[diesel]))
            call(fleet.GetFleetUsage, fleet_pb2.GetFleetUsageRequest(pan=pan))
            call(points.EarnPoints, loyalty_pb2.EarnPointsRequest(
                request_id=new_id(), pan=pan, points=10, valid_until_s=int(time.time()) + 86400))
            call(points.GetPoints, loyalty_pb2.GetPointsRequest(pan=pan))
            for to_pan in (PANS[0], pan[:-1] + str((int(pan[-1]) + 1) % 10)):   # fails Luhn
                call(points.TransferPoints, loyalty_pb2.TransferPointsRequest(
                    request_id=new_id(), pan=pan, to_pan=to_pan, points=1))
        call(fleet.ListFlagged, fleet_pb2.ListFlaggedRequest())
        seen.extend(str(row) for row in operator_points.ListExpiringPoints(
            loyalty_pb2.ListExpiringPointsRequest(within_days=2), timeout=10))
        for _ in range(5):                      # the velocity limit, naming the card masked
            call(terminal.Purchase, authorization_pb2.PurchaseRequest(
                request_id=new_id(), pan=PANS[0], amount=eur(1), pin=PINS[0]))
        cli = subprocess.run([sys.executable, "-m", "cardgate.gateway.cli.main", "--log-level", "DEBUG",
                              "pay", "--pan", PANS[1], "--amount", "1.00", "--data-dir", str(data_dir),
                              "--target", gateway.address], capture_output=True, text=True, timeout=60)
        seen.append(cli.stdout + cli.stderr)
    finally:
        gateway.stop()
    logs = "".join(gateway.output)
    assert "Purchase by demo-terminal: RESULT_CODE_" in logs  # request lines were logged
    said = "\n".join(seen) + logs
    assert "RESOURCE_EXHAUSTED" in said and "WRONG_PIN" in said and "PERMISSION_DENIED" in said
    assert "PROMPT_ODOMETER" in said and "GetFleetUsage by demo-operator: answered" in logs
    assert said.count("valid_until_s") >= len(PANS)           # the expiring list answered
    for pan in PANS:
        assert pan not in said, "a full card number leaked"
        assert pan[:6] + "******" + pan[-4:] in said
    for pin in PINS:
        assert pin not in said, "a PIN leaked"
    audit = subprocess.run([sys.executable, "-m", "cardgate.gateway.cli.main", "audit", "--data-dir",
                            str(data_dir)], capture_output=True, text=True, timeout=60)
    assert audit.returncode == 0, audit.stdout
    stored = b"".join(p.read_bytes() for p in (data_dir / "ledger").iterdir())
    for secret in PANS + PINS:
        assert secret.encode() not in stored
