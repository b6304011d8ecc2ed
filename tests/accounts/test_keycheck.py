"""The encryption key check: the first key is recorded as a fingerprint, another key is refused at start-up."""

import pytest
from django.core.management import CommandError, call_command

from accounts import keycheck, services
from accounts.models import KeyFingerprint, Secret

OTHER_KEY = bytes(range(32))


def test_keycheck_records_the_first_key_and_matches_it_afterwards(db):
    # given a database no process has checked its key against
    # when the check runs twice with the same key
    first, second = keycheck.encryption_key_check(), keycheck.encryption_key_check()
    # then the first records the key's fingerprint, the second finds it matching
    assert (first, second) == ("recorded", "matches")
    assert KeyFingerprint.objects.get().fingerprint == keycheck.key_fingerprint()


def test_keycheck_refuses_another_key_naming_both_fingerprints_never_the_key(db, settings):
    # given a recorded key
    keycheck.encryption_key_check()
    recorded = keycheck.key_fingerprint()
    # when a process with another key checks
    settings.FLOWRUNNER_ENCRYPTION_KEY = OTHER_KEY
    with pytest.raises(keycheck.KeyMismatch) as refused:
        keycheck.encryption_key_check()
    # then it is refused with both fingerprints, the variable to fix, and nothing of either key
    message = str(refused.value)
    assert recorded[: keycheck.SHOWN] in message and keycheck.key_fingerprint()[: keycheck.SHOWN] in message
    assert "FLOWRUNNER_ENCRYPTION_KEY" in message
    assert OTHER_KEY.hex() not in message and recorded not in message


def test_keycheck_of_a_database_with_secrets_but_no_fingerprint_tries_a_secret(db, member, settings):
    # given secrets stored before any fingerprint was recorded
    services.secret_set(account=member[0], key="API_KEY", value="k-123")
    key = settings.FLOWRUNNER_ENCRYPTION_KEY
    # when a process with another key checks, then it is refused and nothing is recorded
    settings.FLOWRUNNER_ENCRYPTION_KEY = OTHER_KEY
    with pytest.raises(keycheck.KeyMismatch, match="cannot decrypt the secrets"):
        keycheck.encryption_key_check()
    assert not KeyFingerprint.objects.exists()
    # when the key the secrets were stored with checks, then it is recorded
    settings.FLOWRUNNER_ENCRYPTION_KEY = key
    assert keycheck.encryption_key_check() == "recorded"


def test_keycheck_at_start_ends_the_process_with_its_reason(db, settings, caplog):
    # given a recorded key and a process with another one
    keycheck.encryption_key_check()
    settings.FLOWRUNNER_ENCRYPTION_KEY = OTHER_KEY
    # when the start-up check runs, then the process exits with status 3 and logs why
    with pytest.raises(SystemExit) as exited:
        keycheck.check_at_start("worker w9@host")
    assert exited.value.code == keycheck.EXIT_KEY_MISMATCH
    assert "worker w9@host refuses to start" in caplog.text and "FLOWRUNNER_ENCRYPTION_KEY" in caplog.text


def test_keycheck_reset_deletes_only_the_lost_secrets_and_records_the_key(db, member, settings, capsys):
    # given a secret stored with a key that is lost, and one stored with this process's key
    settings.FLOWRUNNER_ENCRYPTION_KEY = OTHER_KEY
    services.secret_set(account=member[0], key="LOST", value="gone")
    keycheck.encryption_key_check()
    settings.FLOWRUNNER_ENCRYPTION_KEY = bytes(range(1, 33))
    services.secret_set(account=member[0], key="KEPT", value="still here")
    # when `manage.py encryptionkey` checks, then it refuses; with --reset --yes it forgets the lost key
    with pytest.raises(CommandError, match="is not the key"):
        call_command("encryptionkey")
    call_command("encryptionkey", "--reset", "--yes")
    # then the lost secret is gone, the other kept, and this key is the database's now
    assert list(Secret.objects.values_list("key", flat=True)) == ["KEPT"]
    assert "1 secret(s) it could not decrypt deleted" in capsys.readouterr().out
    assert keycheck.encryption_key_check() == "matches"
