"""`cardgate bureau verify`: read a finished card as another vendor's terminal would,
knowing only the bureau's master key and the documented key derivation (README, the job
file's chip profile): the chip's version, the card's key settings and applications, each
application's keys, files and file settings, then the card data with the derived read
key, and proof that each derived key is the card's (it authenticates)."""
from cardgate.devices import desfire, personalize
from cardgate.devices.desfire import COMMUNICATION, FILE_TYPES, PICC, STORAGE_CODES, DesfireError
from cardgate.gateway.security.pan import mask

SETTING_BITS = ((0x01, "master key changeable", "master key frozen"),
                (0x02, "free listing", "listing needs the master key"),
                (0x04, "free create/delete", "create/delete need the master key"),
                (0x08, "configuration changeable", "configuration frozen"))
STORAGE_BYTES = {code: size for size, code in STORAGE_CODES.items()}


def settings_text(settings: int, application: bool) -> str:
    words = [on if settings & bit else off for bit, on, off in SETTING_BITS]
    if application:
        rule = settings >> 4
        words.append({0x0: "keys changed with key 0", 0xE: "each key changes itself",
                      0xF: "keys frozen"}.get(rule, f"keys changed with key {rule}"))
    return ", ".join(words)


def _access_text(keys: dict) -> str:
    return ", ".join(f"{right} {'free' if n == 0xE else 'never' if n == 0xF else f'key {n}'}"
                     for right, n in keys.items())


def _chip_line(version: bytes) -> str:
    hardware, software, rest = version[0:7], version[7:14], version[14:28]
    storage = STORAGE_BYTES.get(hardware[5], f"code {hardware[5]:#04x}")
    kind = "DESFire EV1" if (hardware[1], hardware[3], hardware[4]) == (1, 1, 0) else "DESFire"
    return (f"chip: {kind}, hardware {hardware[3]}.{hardware[4]}, software {software[3]}.{software[4]}, "
            f"{storage} bytes, UID {rest[:7].hex().upper()}, batch {rest[7:12].hex().upper()}, "
            f"made week {rest[12]:02x} of 20{rest[13]:02x}")


def read_card(d: desfire.Desfire, master_key: bytes, system_id: bytes) -> tuple[list, list]:
    """(lines saying what the card holds, problems found)."""
    lines, problems = [], []

    def proves(what: str, key_no: int, key: bytes) -> bool:
        try:
            d.authenticate_aes(key_no, key)
        except DesfireError as exc:
            problems.append(f"{what}: the derived key does not authenticate ({exc})")
            return False
        lines.append(f"  {what}: the derived key authenticates")
        return True

    d.select_application(PICC)
    version = d.get_version()
    uid = version[14:21]
    lines.append(_chip_line(version))
    settings, _, kind = d.get_key_settings()
    lines.append(f"card: master key {kind} version {d.get_key_version(0)}, key settings "
                 f"{settings:02X} ({settings_text(settings, False)})")
    aids = d.get_application_ids()
    lines.append(f"applications: {', '.join(a.hex().upper() for a in aids) or 'none'}")
    proves("card master key", 0, personalize.card_master_key(master_key, uid, system_id))
    if not aids:
        problems.append("the card holds no application")
    for aid in aids:
        d.select_application(aid)
        settings, keys, kind = d.get_key_settings()
        versions = [d.get_key_version(n) for n in range(keys)]
        lines.append(f"application {aid.hex().upper()}: {keys} {kind} keys, versions "
                     f"{', '.join(map(str, versions))}; key settings {settings:02X} "
                     f"({settings_text(settings, True)})")
        files = {n: d.get_file_settings(n) for n in d.get_file_ids()}
        for n, f in files.items():
            shape = f"{f.size} bytes" if f.file_type in (0, 1) else \
                f"from {f.lower} to {f.upper}" if f.file_type == 2 else ""
            lines.append(f"  file {n}: {FILE_TYPES.get(f.file_type, f.file_type)}, {shape}, "
                         f"{COMMUNICATION.get(f.communication, f.communication)}; {_access_text(f.keys)}")
        app_key, read_key = personalize.card_keys(master_key, uid, aid, system_id)
        proves("application master key (key 0)", personalize.APPLICATION_KEY_NO, app_key)
        if not proves("read key (key 1)", personalize.READ_KEY_NO, read_key):
            continue
        card_file = files.get(personalize.CARD_DATA_FILE)
        if card_file is None or card_file.file_type != 0 or card_file.size != personalize.CARD_DATA_SIZE:
            problems.append(f"application {aid.hex().upper()}: no card-data file")
            continue
        try:
            pan, expiry, program = personalize.parse_card_data(
                d.read_data(personalize.CARD_DATA_FILE, 0, 0))
        except ValueError as exc:
            problems.append(f"application {aid.hex().upper()}: {exc}")
            continue
        lines.append(f"  card data: PAN {mask(pan)}, expires {expiry[2:]}/{expiry[:2]}, program {program}")
        value_file = files.get(personalize.VALUE_FILE)
        if value_file is not None and value_file.file_type == 2:
            lines.append(f"  offline value: {d.get_value(personalize.VALUE_FILE)} minor units "
                         f"(limit {value_file.upper})")
    return lines, problems
