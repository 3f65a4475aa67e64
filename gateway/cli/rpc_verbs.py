"""A CLI verb for each RPC that has no hand-made one: its options come from the request
message (scalars as --field-name, enums by their short names, repeated scalars as lists,
Money as a decimal amount in --currency, other messages as JSON), and its answer is
printed for people (money as money, points and units by name) or, with --json, as the
proto3 JSON of the response, for scripts.

    cardgate create-card-range --range-id 2 --iin-prefix 627701 --pan-length 16 --currency EUR --name Gift
    cardgate preauthorize --demo-card 4 --amount 80.00 --product-codes 19
    cardgate set-card-status --demo-card 1 --status blocked --json
"""
import json
import re
import sys

import grpc
from google.protobuf import descriptor, json_format, message_factory

from cardgate.gateway.api.registration import SERVICES
from cardgate.gateway.security.access import ALLOWED_ROLES
from cardgate.gateway.money import AmountError, format_minor, parse_amount_minor
from cardgate.v1 import common_pb2

# verb -> (service, method); the demo certificate it uses by default is of the first of
# its allowed roles in ROLE_PREFERENCE
VERBS = {
    "preauthorize": ("AuthorizationService", "PreAuthorize"),
    "complete": ("AuthorizationService", "CompletePreAuthorization"),
    "void": ("AuthorizationService", "VoidPreAuthorization"),
    "sell-package": ("AuthorizationService", "SellPackage"),
    "use-units": ("AuthorizationService", "UseUnits"),
    "forecourt-batch": ("ForecourtService", "AuthorizeBatch"),
    "create-card-range": ("IssuingService", "CreateCardRange"),
    "issue-gift-cards": ("IssuingService", "IssueGiftCards"),
    "issue-cards": ("IssuingService", "IssueCards"),
    "set-card-stage": ("IssuingService", "SetCardStage"),
    "replace-card": ("IssuingService", "ReplaceCard"),
    "set-pin": ("IssuingService", "SetCardPin"),
    "adjust": ("IssuingService", "AdjustBalance"),
    "clear": ("IssuingService", "ClearBalance"),
    "deactivate": ("IssuingService", "DeactivateCard"),
    "set-card-status": ("IssuingService", "SetCardStatus"),
    "set-acceptance": ("IssuingService", "SetCardRangeAcceptance"),
    "define-product": ("FleetService", "DefineProduct"),
    "define-outlet": ("FleetService", "DefineOutlet"),
    "set-profile": ("FleetService", "SetRestrictionProfile"),
    "set-contract": ("FleetService", "SetContract"),
    "assign-card": ("FleetService", "AssignCard"),
    "fleet-usage": ("FleetService", "GetFleetUsage"),
    "flagged": ("FleetService", "ListFlagged"),
    "adjust-points": ("LoyaltyService", "AdjustPoints"),
    "transfer-points": ("LoyaltyService", "TransferPoints"),
    "expiring-points": ("LoyaltyService", "ListExpiringPoints"),
    "reserve-points": ("LoyaltyService", "ReservePoints"),
    "confirm-points": ("LoyaltyService", "ConfirmPoints"),
    "release-points": ("LoyaltyService", "ReleasePoints"),
    "define-partner": ("LoyaltyService", "DefinePartner"),
}
ROLE_PREFERENCE = ("terminal", "operator", "bureau")
# RPCs served by verbs of their own (client.py, loyalty.py, office.py, main.py, bureau)
HAND_MADE = {"LoadValue", "Purchase", "Refund", "Reverse", "GetBalance", "EarnPoints",
             "RedeemPoints", "GetPoints", "SetProgram", "SetEarnRules", "RecordSale",
             "SetMember", "GetMember", "GetStatement", "GetSettlement", "GetProgramAnalytics",
             "ListTransactions", "GetFleetInvoice", "GetSalesAnalytics", "WatchEvents",
             "ExportPersonalizationJob", "ReportPersonalization", "GetPersonalizationJob",
             "AuthorizeStream"}
TIMEOUT_S = 60
_TYPES = {descriptor.FieldDescriptor.TYPE_STRING: str, descriptor.FieldDescriptor.TYPE_BOOL: bool}


def _method(verb: str):
    service_name, method_name = VERBS[verb]
    service = next(s for s in SERVICES if s.name == service_name)
    return service, service.methods_by_name[method_name]


def _repeated(field) -> bool:
    """(FieldDescriptor.is_repeated in newer protobuf, its label in older ones)"""
    flag = getattr(field, "is_repeated", None)
    return flag if flag is not None else field.label == field.LABEL_REPEATED


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _enum_names(enum) -> dict:
    """short lower-case name -> number ('blocked' for CARD_STATUS_BLOCKED); UNSPECIFIED out."""
    prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", enum.name).upper() + "_"
    return {value.name.removeprefix(prefix).lower(): value.number for value in enum.values
            if value.number != 0}


def add_verbs(sub, add_connection_options, with_data_dir, func) -> None:
    """The verbs, on the CLI's parser; func(args) runs one (main.cmd_rpc_verb)."""
    for verb, (_, method_name) in VERBS.items():
        service, method = _method(verb)
        roles = ALLOWED_ROLES[f"/{service.full_name}/{method_name}"]
        identity = "demo-" + next(role for role in ROLE_PREFERENCE if role in roles)
        request = method.input_type
        p = add_connection_options(with_data_dir(sub.add_parser(
            verb, help=f"{service.name}.{method_name}: options from its request message; "
            "--json prints the answer as JSON")), identity)
        for field in request.fields:
            _add_field(p, field)
        p.add_argument("--request-json", metavar="JSON", help="the request (or any part of it) "
                       f"as proto3 JSON of cardgate.v1.{request.name}, under the options given")
        p.add_argument("--json", action="store_true", help="print the answer as proto3 JSON")
        p.set_defaults(func=func, verb=verb)


def _add_field(p, field) -> None:
    name, repeated = _option(field.name), _repeated(field)
    if field.name == "pan":
        which = p.add_mutually_exclusive_group()
        which.add_argument("--pan", help="card number")
        which.add_argument("--demo-card", type=int, metavar="N", help="demo card N")
    elif field.name == "request_id":
        p.add_argument("--request-id", default=None, help="UUID of this request (default: a "
                       "new one); reuse it to retry")
    elif field.message_type is not None and field.message_type.name == "Money" and not repeated:
        p.add_argument(name, metavar="AMOUNT", help="amount, e.g. 12.50 (in --currency)")
        if "--currency" not in p._option_string_actions:
            p.add_argument("--currency", default="EUR", help="ISO 4217 code (default: EUR)")
    elif field.message_type is not None:
        p.add_argument(name + "-json", metavar="JSON", dest=field.name,
                       help=f"{field.message_type.name}{' list' if repeated else ''} as JSON")
    elif field.enum_type is not None:
        names = _enum_names(field.enum_type)
        p.add_argument(name, choices=sorted(names), nargs="*" if repeated else None)
    else:
        kind = _TYPES.get(field.type, int)
        if kind is bool:
            p.add_argument(name, action="store_true")
        else:
            p.add_argument(name, type=kind, nargs="*" if repeated else None)


def request_of(verb: str, args, pan):
    """The request message the verb's options describe."""
    _, method = _method(verb)
    request = message_factory.GetMessageClass(method.input_type)()
    if args.request_json:
        json_format.Parse(args.request_json, request)
    for field in method.input_type.fields:
        value = pan if field.name == "pan" else getattr(args, field.name, None)
        if value is None or value == [] or value is False:
            continue
        if field.message_type is not None and field.message_type.name == "Money" and \
                not _repeated(field):
            getattr(request, field.name).CopyFrom(_money(value, args.currency, field.name))
        elif field.message_type is not None:
            parsed = json.loads(value)
            if _repeated(field):
                for item in parsed:
                    json_format.ParseDict(item, getattr(request, field.name).add())
            else:
                json_format.ParseDict(parsed, getattr(request, field.name))
        elif field.enum_type is not None:
            names = _enum_names(field.enum_type)
            if _repeated(field):
                getattr(request, field.name).extend(names[v] for v in value)
            else:
                setattr(request, field.name, names[value])
        elif _repeated(field):
            getattr(request, field.name).extend(value)
        else:
            setattr(request, field.name, value)
    return request


def _money(text, currency, field):
    try:
        return common_pb2.Money(amount_minor=parse_amount_minor(text, currency), currency=currency)
    except AmountError as exc:
        raise SystemExit(f"cardgate: --{field.replace('_', '-')}: {exc}") from None


def run(args, channel, pan) -> int:
    service, method = _method(args.verb)
    try:
        request = request_of(args.verb, args, pan)
    except (json_format.ParseError, ValueError) as exc:
        print(f"cardgate: {exc}", file=sys.stderr)
        return 2
    path = f"/{service.full_name}/{method.name}"
    response_class = message_factory.GetMessageClass(method.output_type)
    call = (channel.unary_stream if method.server_streaming else channel.unary_unary)(
        path, request_serializer=type(request).SerializeToString,
        response_deserializer=response_class.FromString)
    try:
        answers = list(call(request, timeout=TIMEOUT_S)) if method.server_streaming \
            else [call(request, timeout=TIMEOUT_S)]
    except grpc.RpcError as exc:
        print(f"cardgate: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    declined = False
    for answer in answers:
        if args.json:
            print(json_format.MessageToJson(answer, preserving_proto_field_name=True, indent=None))
        else:
            print_message(answer)
        declined |= _declined(answer)
    if getattr(request, "request_id", ""):
        print(f"request id {request.request_id}", file=sys.stderr)
    return 3 if declined else 0


def _declined(answer) -> bool:
    """A business answer that is not an approval (exit status 3, as pay's)."""
    for field, value in answer.ListFields():
        if field.name == "result_code":
            return value not in (1, 2)
        if field.message_type is not None and not _repeated(field) and \
                _declined(value):
            return True
    return False


def print_message(answer, indent: str = "") -> None:
    """A response for people: one line a field; money as money; points and units named."""
    currency = getattr(answer, "currency", "") if "currency" in answer.DESCRIPTOR.fields_by_name else ""
    for field, value in answer.ListFields():
        label = field.name.replace("_", " ")
        if field.message_type is not None and _repeated(field):
            for i, item in enumerate(value):
                print(f"{indent}{label} {i + 1}:")
                print_message(item, indent + "  ")
        elif field.message_type is not None and field.message_type.name == "Money":
            print(f"{indent}{label}: {_amount(value.amount_minor, value.currency)}")
        elif field.message_type is not None:
            print(f"{indent}{label}:")
            print_message(value, indent + "  ")
        elif field.enum_type is not None:
            print(f"{indent}{label}: {field.enum_type.values_by_number[value].name}")
        elif field.name.endswith("_minor") and currency:
            print(f"{indent}{label.removesuffix(' minor')}: {_amount(value, currency)}")
        else:
            print(f"{indent}{label}: {value}")


def _amount(amount_minor: int, currency: str) -> str:
    """Money as money; points and subscription units by their names."""
    if currency == "PTS":
        return f"{amount_minor} points"
    if currency == "UNT":
        return f"{amount_minor} units"
    return format_minor(amount_minor, currency)
