"""The encryption key check: every worker and server compares its key's fingerprint with the database's at start."""

from __future__ import annotations

import hashlib
import hmac
import logging

from django.conf import settings
from django.db import DatabaseError, IntegrityError, ProgrammingError, connections, transaction

from accounts import vault
from accounts.models import KeyFingerprint, Secret

logger = logging.getLogger(__name__)

# HMAC'd under the key: the fingerprint identifies the key without revealing anything of it.
FINGERPRINT_TEXT = b"flowrunner encryption key fingerprint v1"
SHOWN = 12  # hex characters of a fingerprint in messages
EXIT_KEY_MISMATCH = 3
ADVICE = (
    "give every process (web, workers, beat) the same FLOWRUNNER_ENCRYPTION_KEY. If the database's key is lost, "
    "so are the secrets stored with it: `python manage.py encryptionkey --reset` deletes those secrets and "
    "records this key (set them again afterwards)."
)


class KeyMismatch(Exception):
    """This process's FLOWRUNNER_ENCRYPTION_KEY cannot decrypt the secrets in the database."""


def key_fingerprint(key: bytes | None = None) -> str:
    key = settings.FLOWRUNNER_ENCRYPTION_KEY if key is None else key
    return hmac.new(key, FINGERPRINT_TEXT, hashlib.sha256).hexdigest()


def _undecryptable_sample() -> bool:
    """Whether a stored secret fails to decrypt under this key (one row is enough: all share one key)."""
    sample = Secret.objects.values_list("ciphertext", flat=True).order_by("id").first()
    if sample is None:
        return False
    try:
        vault.decrypt(sample)
    except vault.VaultError:
        return True
    return False


def encryption_key_check() -> str:
    """Compare this process's key fingerprint with the database's → "recorded" (this key was the first to be
    checked), "matches", or KeyMismatch. A database from before fingerprints, holding secrets, records this key
    only if it decrypts them."""
    mine = key_fingerprint()
    row = KeyFingerprint.objects.filter(pk=1).first()
    outcome = "matches"
    if row is None:
        if _undecryptable_sample():
            raise KeyMismatch(
                f"FLOWRUNNER_ENCRYPTION_KEY of this process (fingerprint {mine[:SHOWN]}) cannot decrypt the "
                f"secrets stored in the database: {ADVICE}"
            )
        try:
            with transaction.atomic():
                row = KeyFingerprint.objects.create(pk=1, fingerprint=mine)
            outcome = "recorded"
        except IntegrityError:  # another process recorded its key first: compare with that one
            row = KeyFingerprint.objects.get(pk=1)
    if not hmac.compare_digest(row.fingerprint, mine):
        raise KeyMismatch(
            f"FLOWRUNNER_ENCRYPTION_KEY of this process (fingerprint {mine[:SHOWN]}) is not the key the secrets "
            f"in the database are encrypted with (fingerprint {row.fingerprint[:SHOWN]}, recorded "
            f"{row.created_at:%Y-%m-%d %H:%M:%S %Z}); nodes using secrets would fail on this process: {ADVICE}"
        )
    return outcome


def encryption_key_reset() -> int:
    """Forget the database's key: delete the secrets this key cannot decrypt, record this key. Returns the number
    of secrets deleted."""
    with transaction.atomic():
        lost = []
        for secret_id, ciphertext in Secret.objects.values_list("id", "ciphertext"):
            try:
                vault.decrypt(ciphertext)
            except vault.VaultError:
                lost.append(secret_id)
        Secret.objects.filter(id__in=lost).delete()
        KeyFingerprint.objects.update_or_create(pk=1, defaults={"fingerprint": key_fingerprint()})
    return len(lost)


def check_at_start(process: str) -> None:
    """The start-up check of a worker or server: a mismatch is logged and ends the process (exit 3); a
    database that cannot be read yet (not migrated, down) only warns, since the worker may be started first."""
    try:
        outcome = encryption_key_check()
    except KeyMismatch as exc:
        logger.critical("%s refuses to start: %s", process, exc)
        raise SystemExit(EXIT_KEY_MISMATCH) from None
    except ProgrammingError:
        logger.warning(
            "%s: the database has no tables yet, encryption key not checked (run the migrations)", process
        )
    except DatabaseError as exc:
        logger.warning("%s: encryption key not checked, the database does not answer: %s", process, exc)
    else:
        logger.info("%s: encryption key %s (fingerprint %s)", process, outcome, key_fingerprint()[:SHOWN])
    finally:
        # A prefork worker forks its pool after this: no child may inherit this process's connections.
        for connection in connections.all(initialized_only=True):
            connection.close()
            close_pool = getattr(connection, "close_pool", None)
            if close_pool is not None:
                close_pool()


def on_worker_init(sender: object = None, **_: object) -> None:
    """Celery's worker_init receiver: runs before the worker consumes anything."""
    check_at_start(f"worker {getattr(sender, 'hostname', '')}".strip())
