"""Admin keys encrypted at rest with rotating secrets (collector/vault.py)."""

from __future__ import annotations

import stat

import pytest

from collector.core.settings import Settings
from collector.sync.vault import VaultError, load_vault, new_secret, secret_file

KEY = "sk-admin-test-Vv3Nn7Qx"


def test_embedded_default_generates_a_0600_secret_file_once(tmp_path):
    settings = Settings(data_dir=tmp_path)
    vault = load_vault(settings)
    path = secret_file(settings)
    assert path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = vault.encrypt(KEY)
    assert KEY not in token
    # a second process reads the same file rather than generating a new secret
    assert load_vault(settings).decrypt(token) == KEY
    assert path.read_text().count("\n") == 2  # comment line + one secret


def test_env_secrets_newest_first_and_rotation(tmp_path):
    old, new = new_secret(), new_secret()
    token_old = load_vault(Settings(data_dir=tmp_path, secret_keys=old)).encrypt(KEY)
    both = load_vault(Settings(data_dir=tmp_path, secret_keys=f"{new},{old}"))
    assert both.decrypt(token_old) == KEY  # the retired secret still decrypts
    rotated = both.rotate(token_old)
    only_new = load_vault(Settings(data_dir=tmp_path, secret_keys=new))
    assert only_new.decrypt(rotated) == KEY
    with pytest.raises(VaultError, match="cannot decrypt: wrong or missing secret"):
        only_new.decrypt(token_old)
    assert not secret_file(Settings(data_dir=tmp_path)).exists()  # env secrets never touch the file


def test_wrong_secret_is_a_clear_error_not_a_crash(tmp_path):
    token = load_vault(Settings(data_dir=tmp_path / "a")).encrypt(KEY)
    other = load_vault(Settings(data_dir=tmp_path / "b"))  # a copied database without its secret
    with pytest.raises(VaultError) as err:
        other.decrypt(token)
    assert "cannot decrypt: wrong or missing secret" in str(err.value)
    assert KEY not in str(err.value)


def test_shared_database_without_secret_refuses_to_invent_one(tmp_path):
    settings = Settings(data_dir=tmp_path, database_url="postgresql+psycopg://u@127.0.0.1/x")
    with pytest.raises(VaultError, match="LLM_USAGE_SECRET_KEYS"):
        load_vault(settings)
    assert not secret_file(settings).exists()


def test_malformed_secret_is_reported_without_echoing_it(tmp_path):
    with pytest.raises(VaultError, match="malformed secret") as err:
        load_vault(Settings(data_dir=tmp_path, secret_keys="not-a-fernet-key-at-all"))
    assert "not-a-fernet" not in str(err.value)
