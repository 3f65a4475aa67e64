"""The card bureau end to end: cards issued with holders, a personalization job exported
(signed, encrypted to the bureau), `cardgate bureau encode` run against the real pcscd
with two simulated DESFire cards in vpcd's two readers and the MSR206 simulator on a
pty; one card pulled out mid-personalization, the command run again; every card encoded
exactly once, chip and stripe equal the job, the gateway shows each card personalized,
and a stripe read back from the encoder pays."""
import os
import pathlib
import queue
import subprocess
import sys
import threading
import time

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cardgate.bureau.results import ResultsLog
from cardgate.devices import desfire, msr, pcsc, personalize, tracks
from cardgate.devices.desfire_card import DesfireCard
from cardgate.devices.msr_simulator import MsrSimulator
from cardgate.devices.vpcd import READER_NAMES, insert
from cardgate.gateway.issuing import job_file
from cardgate.gateway.security.pki import Pki, load_certificate
from cardgate.v1 import authorization_pb2, common_pb2, issuing_pb2, issuing_pb2_grpc

from helpers import create_range, eur, load, new_id, purchase

MASTER_KEY = "00112233445566778899AABBCCDDEEFF"
HOLDERS = ["Ada Lovelace", "ALAN M. TURING", "Grace O'Hara-Hopper"]
AID = "F00101"


class PullingCard(DesfireCard):
    """A blank card that leaves the reader at its first WriteData (the card-data file),
    once: the chip is half personalized."""
    pulled = False

    def process(self, apdu):
        if apdu[1] == desfire.WRITE_DATA and not self.pulled:
            self.pulled = True
            return None
        return super().process(apdu)


def uid(n: int) -> bytes:
    return bytes.fromhex("04A1B2C3D4E5") + bytes([n])


def exported(stub, request):
    """The job an export streams: its first answer, with the whole file joined."""
    parts = list(stub.ExportPersonalizationJob(request))
    first = parts[0]
    first.job_file = b"".join(part.job_file for part in parts)
    return first


def issue_with_holders(gw):
    stream = gw.issuing.IssueCards(issuing_pb2.IssueCardsRequest(
        request_id=new_id(), range_id=1, expiry_yyyymm=209912, holder_names=HOLDERS,
        numbering=issuing_pb2.CARD_NUMBERING_SEQUENTIAL), timeout=60)
    cards = [c for part in stream for c in part.cards]
    assert [c.result_code for c in cards] == [common_pb2.RESULT_CODE_APPROVED] * 3
    return [c.card_id for c in cards]


def job_of(gw, job_path):
    """A job file the bureau CLI exported (sealed to bureau-1, the certificate it uses)."""
    return job_file.read(job_path.read_bytes(),
                         x509.load_pem_x509_certificate((gw.certs / "ca.crt").read_bytes()),
                         serialization.load_pem_private_key((gw.certs / "bureau-1.key").read_bytes(), None))


def cli(gw, *args, timeout=120):
    return subprocess.run([sys.executable, "-m", "cardgate.gateway.cli.main", "bureau", *args,
                           "--target", gw.gateway.address, "--cert-dir", str(gw.certs),
                           "--as", "bureau-1"], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


class Feeder:
    """The card feed of a bureau machine: puts cards into the readers, and once the
    encoder says a card is done takes it out with its stripe (from the MSR)."""

    def __init__(self, simulator):
        self.simulator = simulator
        self.slots = {}
        self.finished = []              # (card, stripe tracks, encoder's line)
        self.pulled = []
        self.refused = []

    def put(self, card, reader):
        slot, _ = insert(card, reader, connect=False)
        self.slots[reader] = (slot, card)

    @staticmethod
    def wait_until_empty(reader, timeout_s=10):
        """As a machine's feed does: the next card comes once pcscd saw this one go (and
        the encoder with it)."""
        states = pcsc.ReaderStates()
        try:
            deadline = time.monotonic() + timeout_s
            while READER_NAMES[reader] in states.present([READER_NAMES[reader]], 50):
                assert time.monotonic() < deadline, f"pcscd still sees a card in {READER_NAMES[reader]}"
                time.sleep(0.05)
        finally:
            states.close()

    def follow(self, process, then=None):
        """Read the encoder's lines; after each card, take it out (and call then(reader))."""
        lines = []
        for line in process.stdout:
            lines.append(line)
            reader = next((r for r, name in READER_NAMES.items()
                           if line.startswith(f"{name}: card refused") or
                           (line.startswith("card ") and f" in {name}" in line)), None)
            if reader is None:
                continue                    # not about a card in a reader
            slot, card = self.slots.pop(reader)
            if " encoded in " in line:
                self.finished.append((card, self.simulator.take_card(), line))
            elif "card refused" in line:
                self.refused.append((card, line))
            else:
                self.pulled.append((card, line))
            slot.remove()
            self.wait_until_empty(reader)
            if then is not None:
                then(reader)
        return lines


def run_encode(gw, job_path, feeder, then=None, *more, card_wait_s=30):
    process = subprocess.Popen(
        [sys.executable, "-m", "cardgate.gateway.cli.main", "bureau", "encode", str(job_path),
         "--msr", feeder.simulator.path, "--reader", READER_NAMES[0], "--reader", READER_NAMES[1],
         "--master-key", str(job_path.parent / "master.key"), "--bureau-key", str(gw.certs / "bureau-1.key"),
         "--card-wait-s", str(card_wait_s), "--target", gw.gateway.address, "--cert-dir", str(gw.certs),
         "--as", "bureau-1", *more],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    errors = queue.Queue()
    threading.Thread(target=lambda: errors.put(process.stderr.read()), daemon=True).start()
    lines = feeder.follow(process, then)
    code = process.wait(timeout=120)
    return code, "".join(lines), errors.get(timeout=10)


@pytest.mark.slow
def test_issue_export_encode_pull_a_card_rerun_and_pay_with_a_stripe(live_gateway, pcscd, tmp_path):
    gw = live_gateway
    create_range(gw)
    card_ids = issue_with_holders(gw)
    (tmp_path / "master.key").write_text(MASTER_KEY + "\n")

    # Export: signed and encrypted to the bureau's certificate.
    job_path = tmp_path / "job.jsonl"
    done = cli(gw, "export", *[a for i in card_ids for a in ("--card-id", str(i))], "--out", str(job_path),
               "--bureau-cert", str(gw.certs / "bureau-1.crt"), "--aid", AID)
    assert done.returncode == 0, done.stderr
    assert "3 cards, signed and encrypted" in done.stdout
    data = job_path.read_bytes()
    assert job_file.is_sealed(data) and b"LOVELACE" not in data
    ca = x509.load_pem_x509_certificate((gw.certs / "ca.crt").read_bytes())
    key = serialization.load_pem_private_key((gw.certs / "bureau-1.key").read_bytes(), None)
    job = job_file.read(data, ca, key)
    assert [c.holder for c in job.cards] == ["ADA LOVELACE", "ALAN M. TURING", "GRACE O'HARA-HOPPER"]
    # The chip profile says how the keys derive, for another vendor's terminal.
    chip = job.header["chip"]
    assert chip["system_id"] == "6361726467617465" == job.cards[0].chip["system_id"]
    assert "UID (7 bytes) || AID" in chip["key_derivation"]["input"]
    assert (chip["key_derivation"]["card_key_settings"], chip["key_derivation"]["key_version"]) == ("0B", 1)

    simulator = MsrSimulator()
    feeder = Feeder(simulator)
    try:
        # First run: a card in each reader; the one in reader 1 is pulled mid-way. A fresh
        # card replaces each one done until three cards went in.
        cards = iter([DesfireCard(uid(3))])
        feeder.put(DesfireCard(uid(1)), 0)
        feeder.put(PullingCard(uid(2)), 1)

        def refill(reader):
            card = next(cards, None)
            if card is not None:
                feeder.put(card, reader)

        code, out, err = run_encode(gw, job_path, feeder, refill)
        assert code == 1, out + err                       # one card failed: rerun
        assert len(feeder.finished) == 2 and len(feeder.pulled) == 1, out
        pulled_card, line = feeder.pulled[0]
        assert "FAILED" in line and "left" in line, line  # the card left the reader mid-exchange
        assert "1 left: run the same command again" in out

        # Second run: the half-done card goes back in; it is finished, nothing else is touched.
        feeder.put(pulled_card, 0)
        code, out, err = run_encode(gw, job_path, feeder)
        assert code == 0, out + err
        assert "3 of 3 encoded in all" in out
    finally:
        simulator_writes = simulator.writes
        for slot, _ in feeder.slots.values():
            slot.remove()

    # Every card encoded exactly once: three chips, three stripes, each job card on one.
    assert len(feeder.finished) == 3 and simulator_writes == 3
    by_pan = {c.pan: c for c in job.cards}
    master = bytes.fromhex(MASTER_KEY)
    seen = []
    for card, stripe, _ in feeder.finished:
        application = card.applications[bytes.fromhex(AID)]
        pan, yymm, program_id = personalize.parse_card_data(
            bytes(application.files[personalize.CARD_DATA_FILE].data))
        job_card = by_pan[pan]
        seen.append(job_card.seq)
        assert (yymm, program_id) == (job_card.expiry_yymm, job_card.chip["program_id"])
        assert [k.value for k in application.keys] == list(personalize.card_keys(master, card.uid, bytes.fromhex(AID)))
        assert (stripe[1], stripe[2]) == (job_card.track1, job_card.track2)
        assert tracks.parse_track1(stripe[1]).name == job_card.holder
    assert sorted(seen) == [1, 2, 3]
    results = ResultsLog(str(job_path) + ".results.jsonl", job.job_id)
    assert sorted(o.seq for o in results.outcomes if o.encoded) == [1, 2, 3]
    assert not results.unreported()
    results.close()

    # The gateway shows each card personalized, and the one that failed with its reason.
    bureau = issuing_pb2_grpc.IssuingServiceStub(gw.open("bureau-1"))
    status = bureau.GetPersonalizationJob(issuing_pb2.GetPersonalizationJobRequest(job_id=job.job_id))
    assert (status.encoded, status.failed, status.pending) == (3, 0, 0)
    assert all(c.stage == issuing_pb2.CARD_STAGE_PERSONALIZED and c.personalized_at_s > 0
               for c in status.cards)
    assert sorted(c.attempts for c in status.cards) == [1, 1, 2]
    retried = next(c for c in status.cards if c.attempts == 2)
    assert retried.chip_uid == pulled_card.uid

    # A stripe read back from the encoder pays.
    card, stripe, _ = feeder.finished[0]
    simulator = MsrSimulator()
    try:
        simulator.tracks = {**stripe}
        reader = msr.Msr206(simulator.path)
        track1, track2, _ = reader.read_iso()
        reader.close()
    finally:
        simulator.close()
    stripe_data = tracks.parse_track2(track2)
    assert load(gw, stripe_data.pan, 20_00).result_code == common_pb2.RESULT_CODE_APPROVED

    def swipe(track, **more):
        return gw.auth.Purchase(authorization_pb2.PurchaseRequest(
            request_id=new_id(), track2=track, amount=eur(12_50), **more)).authorization

    paid = swipe(track2)
    assert paid.result_code == common_pb2.RESULT_CODE_APPROVED
    assert paid.balance.balance_minor == 7_50
    older = tracks.build_track2(stripe_data.pan, "2512", stripe_data.service_code)
    for track, more, problem in ((older, {}, "not this card's stripe"),
                                 (track2, {"pan": stripe_data.pan}, "not both"),
                                 (track2[:-1], {}, "must start with ; and end with ?")):
        with pytest.raises(grpc.RpcError) as refused:
            swipe(track, **more)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert refused.value.details().startswith("track2") and problem in refused.value.details()
    assert purchase(gw, stripe_data.pan, 1).balance.balance_minor == 7_49     # nothing else taken


def test_job_files_are_refused_when_altered_for_another_bureau_or_unsigned(live_gateway, tmp_path):
    gw = live_gateway
    create_range(gw)
    card_ids = issue_with_holders(gw)
    bureau = issuing_pb2_grpc.IssuingServiceStub(gw.open("bureau-1"))
    # Only signed, its numbers in clear: an operator's explicit choice, never a bureau's.
    request = issuing_pb2.ExportPersonalizationJobRequest(
        request_id=new_id(), card_ids=card_ids, chip=issuing_pb2.ChipProfile(aid=bytes.fromhex(AID)),
        allow_unsealed=True)
    with pytest.raises(grpc.RpcError) as refused:
        exported(bureau, request)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    request.allow_unsealed = False
    with pytest.raises(grpc.RpcError) as refused:
        exported(bureau, request)
    assert refused.value.details().startswith("bureau_certificate_pem: is needed")
    request.allow_unsealed = True
    signed = exported(gw.issuing, request)
    again = exported(gw.issuing, request)                         # a retry: the same job
    assert (again.job_id, again.cards, again.encrypted) == (signed.job_id, 3, False)
    ca = x509.load_pem_x509_certificate((gw.certs / "ca.crt").read_bytes())
    job = job_file.read(signed.job_file, ca)
    assert [c.seq for c in job.cards] == [1, 2, 3]
    first = job.cards[0]
    assert first.emboss[0] == " ".join(first.pan[i:i + 4] for i in range(0, 16, 4))
    assert first.emboss[1:] == ("VALID THRU 12/99", "ADA LOVELACE")
    assert tracks.parse_track2(first.track2).service_code == "701"

    altered = signed.job_file.replace(first.pan.encode(), first.pan[:-1].encode() + b"0", 1)
    with pytest.raises(job_file.JobFileError, match="altered"):
        job_file.read(altered, ca)
    other_ca = x509.load_pem_x509_certificate((gw.certs / "terminal-1.crt").read_bytes())
    with pytest.raises(job_file.JobFileError, match="not issued by the gateway's CA"):
        job_file.read(signed.job_file, other_ca)

    sealed = exported(bureau, issuing_pb2.ExportPersonalizationJobRequest(
        request_id=new_id(), card_ids=card_ids, chip=issuing_pb2.ChipProfile(aid=bytes.fromhex(AID)),
        bureau_certificate_pem=(gw.certs / "bureau-1.crt").read_bytes()))
    with pytest.raises(job_file.JobFileError, match="give its private key"):
        job_file.read(sealed.job_file, ca)
    wrong_key = serialization.load_pem_private_key((gw.certs / "operator-1.key").read_bytes(), None)
    with pytest.raises(job_file.JobFileError, match="cannot be opened"):
        job_file.read(sealed.job_file, ca, wrong_key)

    # Bad requests name their field and change nothing.
    for field, change in (("card_ids", dict(card_ids=[])), ("card_ids[1]", dict(card_ids=[card_ids[0], 999])),
                          ("chip.aid", dict(chip=issuing_pb2.ChipProfile(aid=b"\0\0\0"))),
                          ("service_code", dict(service_code="70")),
                          ("bureau_certificate_pem", dict(bureau_certificate_pem=b"not a certificate"))):
        bad = issuing_pb2.ExportPersonalizationJobRequest(
            request_id=new_id(), card_ids=card_ids, chip=issuing_pb2.ChipProfile(aid=bytes.fromhex(AID)),
            bureau_certificate_pem=(gw.certs / "bureau-1.crt").read_bytes())
        for name, value in change.items():
            if name == "card_ids":
                del bad.card_ids[:]
                bad.card_ids.extend(value)
            elif name == "chip":
                bad.chip.CopyFrom(value)
            else:
                setattr(bad, name, value)
        with pytest.raises(grpc.RpcError) as refused:
            exported(bureau, bad)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert refused.value.details().startswith(field), refused.value.details()

    # A job is sealed only to a bureau certificate of this CA: not a terminal's, not another
    # CA's, not a revoked one.
    other = Pki(tmp_path / "other-ca")
    other.ensure()
    other.issue("bureau", "foreign-bureau", tmp_path / "foreign")
    gw.gateway.pki.issue("bureau", "revoked-bureau", tmp_path / "revoked")
    gw.gateway.pki.revoke(load_certificate(tmp_path / "revoked" / "revoked-bureau.crt").serial_number)
    for pem, why in (((gw.certs / "terminal-1.crt").read_bytes(), "not a bureau's"),
                     ((tmp_path / "foreign" / "foreign-bureau.crt").read_bytes(), "CA issued"),
                     ((tmp_path / "revoked" / "revoked-bureau.crt").read_bytes(), "revoked")):
        with pytest.raises(grpc.RpcError) as refused:
            exported(bureau, issuing_pb2.ExportPersonalizationJobRequest(
                request_id=new_id(), card_ids=card_ids,
                chip=issuing_pb2.ChipProfile(aid=bytes.fromhex(AID)), bureau_certificate_pem=pem))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert why in refused.value.details(), refused.value.details()


def test_results_failed_then_encoded_and_contradictions(live_gateway):
    gw = live_gateway
    create_range(gw)
    card_ids = issue_with_holders(gw)
    bureau = issuing_pb2_grpc.IssuingServiceStub(gw.open("bureau-1"))
    sealed_to = (gw.certs / "bureau-1.crt").read_bytes()
    job = exported(bureau, issuing_pb2.ExportPersonalizationJobRequest(
        request_id=new_id(), card_ids=card_ids, chip=issuing_pb2.ChipProfile(aid=bytes.fromhex(AID)),
        bureau_certificate_pem=sealed_to))

    def report(seq, result, reason="", request_id=None):
        return bureau.ReportPersonalization(issuing_pb2.ReportPersonalizationRequest(
            request_id=request_id or new_id(), job_id=job.job_id, seq=seq, result=result, reason=reason))

    failed = report(2, issuing_pb2.PERSONALIZATION_RESULT_FAILED, "stripe: card swipe error")
    assert failed.stage == issuing_pb2.CARD_STAGE_CREATED
    rid = new_id()
    encoded = report(2, issuing_pb2.PERSONALIZATION_RESULT_ENCODED, request_id=rid)
    assert encoded.stage == issuing_pb2.CARD_STAGE_PERSONALIZED
    assert report(2, issuing_pb2.PERSONALIZATION_RESULT_ENCODED, request_id=rid) == encoded   # a retry
    with pytest.raises(grpc.RpcError) as refused:
        report(2, issuing_pb2.PERSONALIZATION_RESULT_FAILED, "late")
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as refused:
        report(2, issuing_pb2.PERSONALIZATION_RESULT_FAILED, "other content", request_id=rid)
    assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS
    for seq, result, reason, field in ((4, issuing_pb2.PERSONALIZATION_RESULT_ENCODED, "", "seq"),
                                       (1, issuing_pb2.PERSONALIZATION_RESULT_FAILED, "", "reason"),
                                       (1, issuing_pb2.PERSONALIZATION_RESULT_UNSPECIFIED, "", "result")):
        with pytest.raises(grpc.RpcError) as refused:
            report(seq, result, reason)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert refused.value.details().startswith(field)
    with pytest.raises(grpc.RpcError) as refused:
        bureau.GetPersonalizationJob(issuing_pb2.GetPersonalizationJobRequest(job_id="00" * 8))
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND

    status = bureau.GetPersonalizationJob(issuing_pb2.GetPersonalizationJobRequest(job_id=job.job_id))
    assert (status.encoded, status.failed, status.pending) == (1, 0, 2)
    second = status.cards[1]
    assert (second.attempts, second.reason) == (2, "")
    # A card personalized already is in no new job.
    with pytest.raises(grpc.RpcError) as refused:
        exported(bureau, issuing_pb2.ExportPersonalizationJobRequest(
            request_id=new_id(), card_ids=card_ids, chip=issuing_pb2.ChipProfile(aid=bytes.fromhex(AID)),
            bureau_certificate_pem=sealed_to))
    assert "personalized already" in refused.value.details()


def test_holder_names_are_checked_and_kept_encrypted(live_gateway):
    gw = live_gateway
    create_range(gw)
    for names, field in ((["Ada", "Zoë Müller"], "holder_names[1]"), (["A"], "holder_names[0]"),
                         (["X" * 27], "holder_names[0]")):
        with pytest.raises(grpc.RpcError) as refused:
            list(gw.issuing.IssueCards(issuing_pb2.IssueCardsRequest(
                request_id=new_id(), range_id=1, expiry_yyyymm=209912, holder_names=names,
                numbering=issuing_pb2.CARD_NUMBERING_SEQUENTIAL)))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert refused.value.details().startswith(field), refused.value.details()
    with pytest.raises(grpc.RpcError) as refused:
        list(gw.issuing.IssueCards(issuing_pb2.IssueCardsRequest(
            request_id=new_id(), range_id=1, count=2, expiry_yyyymm=209912, holder_names=["ADA LOVELACE"],
            numbering=issuing_pb2.CARD_NUMBERING_SEQUENTIAL)))
    assert refused.value.details().startswith("holder_names")
    issue_with_holders(gw)
    raw = pathlib.Path(gw.data_dir / "ledger" / "data.mdb").read_bytes()
    assert b"LOVELACE" not in raw and b"Lovelace" not in raw
    assert os.stat(gw.data_dir / "ledger" / "data.mdb").st_size > 0


@pytest.mark.slow
def test_encoding_offline_then_import_and_cards_that_are_not_blank(live_gateway, pcscd, tmp_path):
    gw = live_gateway
    create_range(gw)
    card_ids = issue_with_holders(gw)[:2]
    (tmp_path / "master.key").write_text(MASTER_KEY)
    job_path = tmp_path / "job.jsonl"
    assert cli(gw, "export", "--card-id", str(card_ids[0]), "--card-id", str(card_ids[1]),
               "--out", str(job_path), "--aid", AID).returncode == 0
    simulator = MsrSimulator()
    feeder = Feeder(simulator)
    try:
        # Offline, one card, then no more come: it stops, saying how to go on.
        feeder.put(DesfireCard(uid(1)), 0)
        code, out, err = run_encode(gw, job_path, feeder, None, "--offline", card_wait_s=2)
        assert code == 4, out + err
        assert "no card came" in out and "run the same command again" in out
        bureau = issuing_pb2_grpc.IssuingServiceStub(gw.open("bureau-1"))

        def status():
            return bureau.GetPersonalizationJob(issuing_pb2.GetPersonalizationJobRequest(
                job_id=job_of(gw, job_path).job_id))

        assert (status().encoded, status().pending) == (0, 2)       # the gateway knows nothing yet
        done = cli(gw, "import", f"{job_path}.results.jsonl")
        assert done.returncode == 0 and "1 results sent, 0 not" in done.stdout, done.stdout + done.stderr
        assert (status().encoded, status().pending) == (1, 1)
        assert "1 encoded, 0 failed, 1 pending" in cli(gw, "status", status().job_id).stdout
        assert "0 results sent" in cli(gw, "import", f"{job_path}.results.jsonl").stdout  # nothing twice

        # Next run: the card already encoded is refused, then one carrying the application
        # that this job never started on, then a blank one takes card 2.
        encoded_card = feeder.finished[0][0]
        foreign = DesfireCard(uid(9))
        foreign.power(True)
        other = desfire.Desfire(foreign.process)                    # straight to the card
        other.authenticate_iso(0, bytes(16))                       # the factory's DES key
        other.create_application(bytes.fromhex(AID), 0x0B, 2)
        assert bytes.fromhex(AID) in foreign.applications
        rekeyed = DesfireCard(uid(8))                                # its card master key is not the factory's
        rekeyed.power(True)
        other = desfire.Desfire(rekeyed.process)
        other.authenticate_iso(0, bytes(16))
        other.change_key(0, bytes(range(16)), version=1)
        queue_of_cards = iter([foreign, rekeyed, DesfireCard(uid(2))])

        def refill(reader):
            card = next(queue_of_cards, None)
            if card is not None:
                feeder.put(card, reader)

        feeder.put(encoded_card, 0)
        code, out, err = run_encode(gw, job_path, feeder, refill)
        assert code == 0, out + err
        assert [line.split("card refused: ")[1].split(";")[0] for _, line in feeder.refused] == [
            "this chip already carries card 1 of the job",
            f"the chip already carries application {AID} and this job never started on it: "
            "not a blank card",
            "its card master key is not the factory's and this job never started on it: not a blank card"]
        assert "2 of 2 encoded in all" in out
        assert (status().encoded, status().pending) == (2, 0)
    finally:
        for slot, _ in feeder.slots.values():
            slot.remove()
        simulator.close()
    assert simulator.writes == 2


class StallingCard(DesfireCard):
    """A blank card that stalls at its first WriteData until released: the moment to
    kill the encoder, with the chip bound to a job card and half written."""

    def __init__(self, uid_):
        super().__init__(uid_)
        self.reached, self.release = threading.Event(), threading.Event()

    def process(self, apdu):
        if apdu[1] == desfire.WRITE_DATA and not self.release.is_set():
            self.reached.set()
            self.release.wait(30)
        return super().process(apdu)


@pytest.mark.slow
def test_an_encoder_killed_mid_card_finishes_that_card_on_the_same_chip(live_gateway, pcscd, tmp_path):
    gw = live_gateway
    create_range(gw)
    card_id = issue_with_holders(gw)[0]
    (tmp_path / "master.key").write_text(MASTER_KEY)
    job_path = tmp_path / "job.jsonl"
    assert cli(gw, "export", "--card-id", str(card_id), "--out", str(job_path), "--aid", AID).returncode == 0
    simulator = MsrSimulator()
    feeder = Feeder(simulator)
    card = StallingCard(uid(5))
    try:
        feeder.put(card, 0)
        process = subprocess.Popen(
            [sys.executable, "-m", "cardgate.gateway.cli.main", "bureau", "encode", str(job_path),
             "--msr", simulator.path, "--reader", READER_NAMES[0], "--master-key", str(tmp_path / "master.key"),
             "--card-wait-s", "30", "--target", gw.gateway.address, "--cert-dir", str(gw.certs),
             "--as", "bureau-1"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert card.reached.wait(30), "the encoder never wrote the card-data file"
        process.kill()                                     # SIGKILL, mid-card
        process.communicate(timeout=30)
        card.release.set()
        assert simulator.writes == 0
        results = (tmp_path / "job.jsonl.results.jsonl").read_text()
        assert '"event": "started"' in results and '"event": "encoded"' not in results

        # The same chip still in the reader: the rerun finishes the card it was bound to.
        code, out, err = run_encode(gw, job_path, feeder)
        assert code == 0, out + err
        assert "card 1 " in out and "encoded in" in out and "1 of 1 encoded in all" in out
    finally:
        card.release.set()
        for slot, _ in feeder.slots.values():
            slot.remove()
        simulator.close()
    (finished, stripe, _), = feeder.finished
    assert finished is card and simulator.writes == 1
    job = job_of(gw, job_path)
    assert (stripe[1], stripe[2]) == (job.cards[0].track1, job.cards[0].track2)
    application = card.applications[bytes.fromhex(AID)]
    assert personalize.parse_card_data(bytes(application.files[personalize.CARD_DATA_FILE].data))[0] == \
        job.cards[0].pan


def test_a_large_batch_is_exported_by_its_issue_request_in_parts(live_gateway):
    gw = live_gateway
    create_range(gw)
    issue_id = new_id()
    issued = [c.card_id for part in gw.issuing.IssueCards(issuing_pb2.IssueCardsRequest(
        request_id=issue_id, range_id=1, count=1200, expiry_yyyymm=209912,
        numbering=issuing_pb2.CARD_NUMBERING_RANDOM)) for c in part.cards]
    bureau = issuing_pb2_grpc.IssuingServiceStub(gw.open("bureau-1"))
    request = issuing_pb2.ExportPersonalizationJobRequest(
        request_id=new_id(), issue_request_id=issue_id, chip=issuing_pb2.ChipProfile(aid=bytes.fromhex(AID)),
        bureau_certificate_pem=(gw.certs / "bureau-1.crt").read_bytes())
    parts = list(bureau.ExportPersonalizationJob(request))
    assert len(parts) > 3 and all(len(p.job_file) <= 48 * 1024 for p in parts)
    ca = x509.load_pem_x509_certificate((gw.certs / "ca.crt").read_bytes())
    key = serialization.load_pem_private_key((gw.certs / "bureau-1.key").read_bytes(), None)
    job = job_file.read(b"".join(p.job_file for p in parts), ca, key)
    assert [c.card_id for c in job.cards] == issued and len(set(c.pan for c in job.cards)) == 1200
    assert all(c.holder == "" and tracks.parse_track1(c.track1).name == "GIFT CARDS" for c in job.cards[:3])
    with pytest.raises(grpc.RpcError) as refused:
        exported(bureau, issuing_pb2.ExportPersonalizationJobRequest(
            request_id=new_id(), issue_request_id=new_id(), chip=issuing_pb2.ChipProfile(aid=b"\x01\x02\x03")))
    assert refused.value.details().startswith("issue_request_id")
