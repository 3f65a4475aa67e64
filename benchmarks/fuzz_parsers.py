"""Coverage-guided fuzzing (atheris) of every parser that reads bytes from outside:

  * request messages as they arrive over gRPC (tolerant protobuf parsing, then the
    same validation the services run: request ids, card numbers, currencies, amounts);
  * client certificates (DER/PEM) and the role they carry;
  * fastcore's record decoders (C code reading LMDB values and request buffers), the
    admin log's lines included;
  * stored PAN records (key id, nonce, AES-GCM) and amounts typed on the command line;
  * wrapped keys as the KEK opens them (kek.unwrap);
  * free text as errors and logs show it: card numbers masked (mask_pans_in, checked: no
    Luhn-valid 13-19 digit run survives), request ids quoted only as UUIDs;
  * a scoped operator's scope check (scope.refusal) over every request message;
  * ISO 8583 messages as terminals send them (codec.decode with profile 1987's spec, then
    the translation to a request and the answer's encoding); an error never shows a
    card number.

    pip install atheris
    python -m benchmarks.fuzz_parsers -runs=500000      # libFuzzer flags pass through

libFuzzer's closing line ("#N DONE") says how many inputs ran; a crash or an unexpected exception stops it with the
input that caused it (written to ./crash-*). Found and fixed so far: a truncated
PAN record raised IndexError (datakeys._split now refuses it clearly), and a client
certificate with a duplicated extension escaped identity_of as DuplicateExtension
(now a PkiError, so the gateway answers UNAUTHENTICATED).
"""
import re
import sys

import atheris

with atheris.instrument_imports():
    from cryptography import x509
    from google.protobuf import message_factory

    from cardgate.fastcore import records
    from cardgate.gateway import money, validation
    from cardgate.gateway.api.registration import SERVICES, Malformed, _tolerant_parser
    from cardgate.gateway.iso8583 import codec, translate
    from cardgate.gateway.ops.logs import shown_request_id
    from cardgate.gateway.security import kek as kek_mod, pan as pan_mod, scope
    from cardgate.gateway.security.datakeys import KeyRing, record_key_id
    from cardgate.gateway.security.pki import Identity, PkiError, identity_of

REQUEST_PARSERS = [
    (f"/{service.full_name}/{method.name}",
     _tolerant_parser(message_factory.GetMessageClass(method.input_type)))
    for service in SERVICES for method in service.methods]
SCOPED = (Identity("operator", "fuzz", 1, ranges=frozenset({1, 7})),
          Identity("operator", "fuzz", 2, partner_id=12))
KEK = kek_mod.LocalKek(bytes(range(32)), "fuzz")
UNPACKERS = [records.unpack_reply, records.unpack_replies, records.unpack_request,
             records.unpack_request_record, records.unpack_card, records.unpack_account,
             records.unpack_journal_entry, records.unpack_range, records.parse_book_key,
             records.journal_seq_of, records.unpack_hold, records.unpack_lot,
             records.unpack_profile, records.unpack_usage, records.unpack_contract,
             records.unpack_catalog, records.unpack_program, records.unpack_rules,
             records.unpack_member, records.unpack_points_line, records.unpack_outlet,
             lambda data: records.unpack_admin_line(data[:24], data[24:])]
EXPECTED = (ValueError, x509.InvalidVersion, PkiError, money.AmountError, pan_mod.PanError,
            validation.InvalidArgument, kek_mod.KekError)
TARGETS = 9
DIGIT_RUN = re.compile(r"[0-9]{13,}")
inputs = 0
failed = False


def validate_fields(request):
    for field, check in (("request_id", validation.request_id),
                         ("original_request_id", validation.request_id),
                         ("pan", validation.pan), ("currency", validation.currency)):
        value = getattr(request, field, None)
        if value:
            try:
                check(value)
            except validation.InvalidArgument:
                pass
    amount = getattr(request, "amount", None)
    if amount is not None:
        for check, value in ((validation.amount_minor, amount.amount_minor),
                             (validation.currency, amount.currency)):
            try:
                check(value)
            except validation.InvalidArgument:
                pass


def check_masked(text: str):
    """No card number (a 13-19 digit run passing the Luhn check), nor a longer digit run
    that may hold one, is left in text."""
    for run in DIGIT_RUN.findall(text):
        if len(run) > pan_mod.PAN_LENGTH_MAX or pan_mod.luhn_valid(run):
            raise AssertionError(f"a card number survived masking in {text!r}")


def iso8583_message(data: bytes):
    """Decode, translate and answer one message; a refusal names no card number."""
    try:
        fields = codec.decode(data)
        translate.operation(fields, "m", "o")
        codec.encode(translate.answer(fields, "00"))
    except codec.FormatError as exc:
        check_masked(str(exc))
        codec.encode(translate.answer({"t": exc.mti or "0800", **exc.echo}, "30"))


def one_input(data: bytes):
    global inputs, failed
    inputs += 1
    if not data:
        return
    target, rest = data[0] % TARGETS, data[1:]
    try:
        if target == 0:
            method, parser = REQUEST_PARSERS[len(rest) % len(REQUEST_PARSERS)]
            parsed = parser(rest)
            if not isinstance(parsed, Malformed):
                validate_fields(parsed)
                for identity in SCOPED:
                    scope.refusal(identity, method, parsed, lambda pan: len(pan) % 9,
                                  lambda card_id: card_id % 9)
        elif target == 1:
            try:
                cert = x509.load_der_x509_certificate(rest)
            except ValueError:
                cert = x509.load_pem_x509_certificate(rest)
            identity_of(cert)
        elif target == 2:
            for unpack in UNPACKERS:
                try:
                    unpack(rest)
                except ValueError:
                    pass
        elif target == 3:
            record_key_id(rest)
            RING.decrypt(rest, 1)
        elif target == 4:
            text = rest.decode("utf-8", "replace")
            money.parse_amount_minor(text, "EUR")
        elif target == 5:
            kek_mod.unwrap(KEK, rest, kek_mod.PAN_INDEX_KEY.purpose)
        elif target == 6:
            text = rest.decode("utf-8", "replace")
            check_masked(pan_mod.mask_pans_in(text))
            check_masked(shown_request_id(text))
        elif target == 8:
            iso8583_message(rest)
        else:
            unwrapped = kek_mod.unwrap(KEK, kek_mod.wrap(KEK, rest, b"x"), b"x")
            if unwrapped != rest:
                raise AssertionError("a wrapped key did not come back as it went in")
    except EXPECTED:
        pass
    except Exception as exc:          # AES-GCM refusing a forged record is expected too
        if type(exc).__name__ not in ("InvalidTag", "KeyError_", "UnicodeDecodeError"):
            failed = True
            raise


def write_seeds(folder):
    """Valid inputs for each target (first byte picks it), so mutation starts deep."""
    import os
    import pathlib
    import uuid

    from cardgate.gateway.security.pki import Pki
    from cardgate.v1 import authorization_pb2, common_pb2, issuing_pb2

    def seed(target, payload, n=[0]):
        n[0] += 1
        pathlib.Path(folder, f"seed-{n[0]}").write_bytes(bytes([target]) + payload)

    money_ = common_pb2.Money(amount_minor=1250, currency="EUR")
    pan = "6277000000000001"[:-1]
    pan += str(pan_mod.luhn_check_digit(pan))
    for msg in (authorization_pb2.PurchaseRequest(request_id=str(uuid.uuid4()), pan=pan, amount=money_),
                authorization_pb2.RefundRequest(request_id=str(uuid.uuid4()), pan=pan, amount=money_,
                                                original_request_id=str(uuid.uuid4())),
                issuing_pb2.CreateCardRangeRequest(request_id=str(uuid.uuid4()), range_id=1,
                                                   iin_prefix="627700", pan_length=16, currency="EUR")):
        seed(0, msg.SerializeToString())
    pki = Pki(folder + "-pki")
    pki.ensure()
    pki.issue("terminal", "t", folder + "-pki/clients", merchant_id="m", outlet_id="o")
    seed(1, pathlib.Path(folder + "-pki/clients/t.crt").read_bytes())
    seed(2, records.pack_request(records.Op.PURCHASE, os.urandom(16), card_key=os.urandom(32),
                                 currency="EUR", amount_minor=5))
    seed(3, RING.encrypt(pan, 1))
    seed(4, b"12.50")
    seed(5, kek_mod.wrap(KEK, os.urandom(32), kek_mod.PAN_INDEX_KEY.purpose))
    seed(6, f"request_id {pan} is not a UUID".encode())
    seed(7, os.urandom(32))
    pki.issue("operator", "scoped", folder + "-pki/clients", ranges=[1, 7])
    seed(8, codec.encode({"t": "0200", "2": pan, "3": "000000", "4": "000000001250",
                          "7": "1207163000", "11": "000001", "41": "TERM0001", "49": "978"}))
    seed(1, pathlib.Path(folder + "-pki/clients/scoped.crt").read_bytes())


if __name__ == "__main__":
    import atexit
    import tempfile

    RING = KeyRing.load_or_create(tempfile.mkdtemp(), KEK)
    atheris.instrument_all()
    if not any(not a.startswith("-") for a in sys.argv[1:]):
        corpus = tempfile.mkdtemp(prefix="cardgate-fuzz-")
        write_seeds(corpus)
        sys.argv.append(corpus)
    atexit.register(lambda: print(f"fuzz_parsers: {inputs} inputs ran, "
                                  f"{'FAILED' if failed else 'nothing found'}", flush=True))
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
