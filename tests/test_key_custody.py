"""Key custody: every key that protects card data (and the gateway's own private keys) is
kept only wrapped by a key-encryption key that is not in the data directory: a key file
beside it, or an AES key on a PKCS#11 token (SoftHSM2 here, made by the test itself, as
a bank would use an HSM). A thief holding the data directory and a backup, without the
KEK, gets no card number and no key; serving or restoring needs the KEK; the KEK can be
rotated."""
import base64
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import serialization

from cardgate.gateway.cli.demo import read_demo_pans
from cardgate.gateway.security import kek as kek_mod
from cardgate.gateway.store.backup import backup

from conftest import LiveGateway
from gateway_process import GatewayProcess
from helpers import create_range, issue, load, make_pan

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
TOKEN, USER_PIN = "cardgate-test", "4321"
PANS = [make_pan(n) for n in (11, 12, 13)]


def files_under(*folders):
    for folder in folders:
        for path in pathlib.Path(folder).rglob("*"):
            if path.is_file():
                yield path


def secrets_of(gw) -> dict:
    """Every secret a thief would want, as bytes, read from the running gateway."""
    store = gw.gateway.store
    found = {"PAN index key": store.pan_key._secret, "PIN key": store.pin_key._secret}
    for key_id in store.key_ring.key_ids():
        found[f"data key {key_id}"] = base64.b64decode(store.key_ring._current()["keys"][key_id])
    for name, wrapped in (("CA key", kek_mod.CA_KEY), ("server key", kek_mod.SERVER_KEY)):
        key = gw.gateway.pki._read_wrapped(wrapped)
        found[name] = key.private_numbers().private_value.to_bytes(32, "big")
        found[name + " PEM"] = key.private_bytes(serialization.Encoding.DER,
                                                 serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption())
    for pan in PANS:
        found["PAN " + pan[-4:]] = pan.encode()
    return found


def assert_nothing_given_away(secrets: dict, *folders):
    forms = {name: (raw, base64.b64encode(raw), raw.hex().encode()) for name, raw in secrets.items()}
    for path in files_under(*folders):
        data = path.read_bytes()
        for name, variants in forms.items():
            assert not any(v in data for v in variants), f"{name} found in {path}"
        assert b"PRIVATE KEY" not in data, path


def served_with_cards(data_dir) -> dict:
    """A gateway on data_dir that issued PANS and loaded them, stopped: its secrets."""
    gw = LiveGateway(data_dir)
    try:
        create_range(gw)
        issue(gw, PANS)
        for pan in PANS:
            load(gw, pan, 10_00)
        return secrets_of(gw)
    finally:
        gw.close()


def open_in_a_new_process(data_dir, env):
    """What a thief's (or an operator's) fresh process gets from the data directory."""
    code = ("import sys; from cardgate.gateway.store.store import Store; "
            "s = Store(sys.argv[1]); print(s.key_ring.active_key_id); s.close()")
    return subprocess.run([sys.executable, "-c", code, str(data_dir)], capture_output=True,
                          text=True, timeout=60, env=env)


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CARDGATE_PKCS11", "CARDGATE_KEK"))}
    env.update(extra)
    return env


def test_without_the_kek_file_a_data_directory_and_its_backup_give_nothing(tmp_path):
    data_dir = tmp_path / "data"
    secrets = served_with_cards(data_dir)
    backup(data_dir, tmp_path / "backup")
    kek_file = kek_mod.default_file(data_dir)
    assert kek_file.exists() and not kek_file.is_relative_to(data_dir)
    made = [w for w in kek_mod.ALL_WRAPPED if (data_dir / w.path).exists()]
    assert set(kek_mod.ALL_WRAPPED) - set(made) == {kek_mod.SIGNER_KEY}   # made on a first job
    assert_nothing_given_away(secrets, data_dir, tmp_path / "backup")
    # The thief's copy, away from the KEK: nothing opens.
    stolen = tmp_path / "elsewhere"
    shutil.copytree(data_dir, stolen / "data")
    shutil.copytree(tmp_path / "backup", stolen / "backup")
    for copy in ("data", "backup"):
        refused = open_in_a_new_process(stolen / copy, clean_env())
        assert refused.returncode != 0 and "KekError" in refused.stderr, refused.stderr
        assert "no KEK file" in refused.stderr
        wrong = open_in_a_new_process(stolen / copy, clean_env(CARDGATE_KEK="11" * 32))
        assert wrong.returncode != 0 and "does not open" in wrong.stderr, wrong.stderr
    # With the KEK, the backup restores and serves the same keys.
    restored = subprocess.run(
        [sys.executable, "-m", "cardgate.gateway.cli.main", "restore", str(tmp_path / "backup"),
         "--data-dir", str(tmp_path / "restored")], capture_output=True, text=True, timeout=120,
        env=clean_env(CARDGATE_KEK_FILE=str(kek_file)))
    assert restored.returncode == 0, restored.stderr
    opened = open_in_a_new_process(tmp_path / "restored", clean_env(CARDGATE_KEK_FILE=str(kek_file)))
    assert opened.returncode == 0 and opened.stdout.strip() == "k1", opened.stderr


def test_a_kek_file_inside_the_data_directory_is_refused(tmp_path):
    with pytest.raises(kek_mod.KekError, match="inside the data directory"):
        kek_mod.resolve(tmp_path / "data", create=True,
                        environ={kek_mod.ENV_FILE: str(tmp_path / "data" / "keys" / "kek")})


def test_wrapped_keys_are_bound_to_what_they_are(tmp_path):
    kek = kek_mod.LocalKek(b"\x07" * 32, "test")
    blob = kek_mod.wrap(kek, b"\x01" * 32, kek_mod.PAN_INDEX_KEY.purpose)
    assert kek_mod.unwrap(kek, blob, kek_mod.PAN_INDEX_KEY.purpose) == b"\x01" * 32
    with pytest.raises(kek_mod.KekError):            # the PAN index key cannot pose as the PIN key
        kek_mod.unwrap(kek, blob, kek_mod.PIN_KEY.purpose)
    with pytest.raises(kek_mod.KekError):
        kek_mod.unwrap(kek, blob[:-1] + bytes([blob[-1] ^ 1]), kek_mod.PAN_INDEX_KEY.purpose)


def test_rotating_the_kek_rewraps_every_key(tmp_path):
    data_dir = tmp_path / "data"
    secrets = served_with_cards(data_dir)
    old = kek_mod.default_file(data_dir)
    new = tmp_path / "vault" / "new.kek"
    new.parent.mkdir()
    rewrap = subprocess.run(
        [sys.executable, "-m", "cardgate.gateway.cli.main", "keys", "rewrap", "--data-dir",
         str(data_dir), "--to-kek-file", str(new)], capture_output=True, text=True, timeout=60,
        env=clean_env())
    assert rewrap.returncode == 0, rewrap.stderr
    assert f"wrapped {len(kek_mod.ALL_WRAPPED) - 1} keys" in rewrap.stdout    # no job signer yet
    assert open_in_a_new_process(data_dir, clean_env(CARDGATE_KEK_FILE=str(new))).returncode == 0
    stale = open_in_a_new_process(data_dir, clean_env(CARDGATE_KEK_FILE=str(old)))
    assert stale.returncode != 0 and "does not open" in stale.stderr
    assert_nothing_given_away(secrets, data_dir)
    verify = subprocess.run([sys.executable, "-m", "cardgate.gateway.cli.main", "keys", "verify",
                             "--data-dir", str(data_dir)], capture_output=True, text=True,
                            timeout=60, env=clean_env(CARDGATE_KEK_FILE=str(new)))
    assert verify.returncode == 0 and "3 under k1" in verify.stdout, verify.stdout + verify.stderr


@pytest.fixture
def softhsm_token(tmp_path, monkeypatch):
    """A SoftHSM2 token of its own (Debian's softhsm2, installed by ./run), with the
    gateway configured to keep its KEK there."""
    if shutil.which("softhsm2-util") is None or not os.path.exists(SOFTHSM_MODULE):
        pytest.fail("SoftHSM2 is not installed; ./run test installs it (Debian: softhsm2)")
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n"
                    "log.level = ERROR\n")
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    made = subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", TOKEN,
                           "--so-pin", "12345678", "--pin", USER_PIN], capture_output=True,
                          text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    settings = {kek_mod.ENV_MODULE: SOFTHSM_MODULE, kek_mod.ENV_TOKEN: TOKEN,
                kek_mod.ENV_PIN: USER_PIN}
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    for name in (kek_mod.ENV_FILE, kek_mod.ENV_HEX):
        monkeypatch.delenv(name, raising=False)
    return {**settings, "SOFTHSM2_CONF": str(conf)}


def test_a_kek_on_a_pkcs11_token_never_leaves_it(tmp_path, softhsm_token):
    import pkcs11

    data_dir = tmp_path / "data"
    secrets = served_with_cards(data_dir)
    backup(data_dir, tmp_path / "backup")
    assert not kek_mod.default_file(data_dir).exists()         # no key file was made
    for wrapped in kek_mod.ALL_WRAPPED[:-2]:          # the job signer's is made on a first job
        blob = (data_dir / wrapped.path).read_bytes()
        assert blob[len(kek_mod.MAGIC)] == kek_mod.KIND_PKCS11
    assert_nothing_given_away(secrets, data_dir, tmp_path / "backup", tmp_path / "tokens")
    key = kek_mod.of_data_dir(data_dir)._key           # this process's session on the token
    assert key.label == kek_mod.PKCS11_KEY_LABEL_DEFAULT
    assert key[pkcs11.Attribute.SENSITIVE] and not key[pkcs11.Attribute.EXTRACTABLE]
    # With the token the data directory opens; without it (nor a key file), nothing does.
    assert open_in_a_new_process(data_dir, dict(os.environ)).returncode == 0
    for copy in (data_dir, tmp_path / "backup"):
        refused = open_in_a_new_process(copy, clean_env())
        assert refused.returncode != 0 and "KekError" in refused.stderr
        wrong_pin = open_in_a_new_process(copy, {**os.environ, kek_mod.ENV_PIN: "0000"})
        assert wrong_pin.returncode != 0 and "cannot open" in wrong_pin.stderr
    # A backup restores with the token.
    restored = subprocess.run(
        [sys.executable, "-m", "cardgate.gateway.cli.main", "restore", str(tmp_path / "backup"),
         "--data-dir", str(tmp_path / "restored")], capture_output=True, text=True, timeout=120)
    assert restored.returncode == 0, restored.stderr
    manifest = json.loads((tmp_path / "backup" / "BACKUP.json").read_text())
    assert manifest["store_format"]


def test_the_demos_data_directory_gives_nothing_without_its_kek(tmp_path):
    """The default first start (demo cards, demo client certificates): its data directory
    holds no card number and no bare key either."""
    data_dir = tmp_path / "data"
    gateway = GatewayProcess(data_dir)
    try:
        pans = read_demo_pans(data_dir)
    finally:
        assert gateway.stop() == 0
    backup(data_dir, tmp_path / "backup")
    for path in files_under(data_dir, tmp_path / "backup"):
        data = path.read_bytes()
        assert b"PRIVATE KEY" not in data, path
        assert not any(pan.encode() in data for pan in pans), path
