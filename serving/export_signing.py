"""Signing an export: an HMAC-SHA256 over both files' exact bytes with the team's key
(``NBA_SIGNING_KEY``), written as ``signature.json`` and verified before anything is parsed."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path

from nba.errors import NBAValidationError
from nba.serving.export_format import (
    SPEC_FILE,
    WEIGHTS_FILE,
    PolicyFormatError,
    _parse_json,
    _read_capped,
)

SIGNATURE_FILE = "signature.json"
SIGNATURE_FORMAT = "nba-policy-signature/1"
SIGNING_KEY_ENV = "NBA_SIGNING_KEY"
MIN_KEY_BYTES = 16  # a signing key at least this long


def default_signing_key() -> bytes | None:
    """The key in ``NBA_SIGNING_KEY`` (UTF-8 bytes), or None when it is unset or empty."""
    text = os.environ.get(SIGNING_KEY_ENV, "")
    return _checked_key(text.encode("utf-8"), SIGNING_KEY_ENV) if text else None


def signature_message(spec_bytes: bytes, weight_bytes: bytes) -> bytes:
    """What the HMAC covers: the format and the SHA-256 of both files' exact bytes."""
    return (
        f"{SIGNATURE_FORMAT}\n{SPEC_FILE} {hashlib.sha256(spec_bytes).hexdigest()}\n"
        f"{WEIGHTS_FILE} {hashlib.sha256(weight_bytes).hexdigest()}\n"
    ).encode()


def sign_export(spec_bytes: bytes, weight_bytes: bytes, key: bytes | str) -> bytes:
    """The ``signature.json`` bytes for an export's two files (HMAC-SHA256 with ``key``)."""
    secret = _checked_key(key, "signing_key")
    message = signature_message(spec_bytes, weight_bytes)
    payload = {
        "format": SIGNATURE_FORMAT,
        "algorithm": "HMAC-SHA256",
        "files": {
            SPEC_FILE: hashlib.sha256(spec_bytes).hexdigest(),
            WEIGHTS_FILE: hashlib.sha256(weight_bytes).hexdigest(),
        },
        "hmac": hmac.new(secret, message, hashlib.sha256).hexdigest(),
    }
    return json.dumps(payload, indent=2).encode()


def _verify_signature(folder: Path, key: bytes, spec_bytes: bytes, weight_bytes: bytes) -> None:
    if not (folder / SIGNATURE_FILE).is_file():
        raise PolicyFormatError(
            f"policy: {SIGNATURE_FILE} missing in {str(folder)!r}: a signing key is configured "
            "and this export is not signed"
        )
    payload = _parse_json(_read_capped(folder, SIGNATURE_FILE, 64 << 10), SIGNATURE_FILE)
    mac = payload.get("hmac") if isinstance(payload, dict) else None
    if not isinstance(payload, dict) or payload.get("format") != SIGNATURE_FORMAT:
        raise PolicyFormatError(f"{SIGNATURE_FILE}.format: expected {SIGNATURE_FORMAT!r}")
    if not isinstance(mac, str):
        raise PolicyFormatError(f"{SIGNATURE_FILE}.hmac: expected a hex string")
    expected = hmac.new(key, signature_message(spec_bytes, weight_bytes), hashlib.sha256)
    if not hmac.compare_digest(mac.encode(), expected.hexdigest().encode()):
        raise PolicyFormatError(
            f"{SIGNATURE_FILE}: the signature does not match {SPEC_FILE} and {WEIGHTS_FILE} "
            "under the configured key (modified after signing, or signed with another key)"
        )


def _checked_key(key: bytes | str, name: str) -> bytes:
    secret = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    if len(secret) < MIN_KEY_BYTES:
        raise NBAValidationError(
            f"{name}: a signing key needs at least {MIN_KEY_BYTES} bytes, got {len(secret)}"
        )
    return secret
