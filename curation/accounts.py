"""Accounts: an optional password list for a shared deployment (names with scrypt-hashed passwords)."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

PASSWORDS_ENV = "FORMCHECK_PASSWORDS"  # path of the list; unset = no login (the local default)


class AccountError(ValueError):
    """A bad name or password, or an unreadable password list."""


def _hash(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)


def password_file() -> Path | None:
    """The configured password list, or None when logins are off."""
    value = os.environ.get(PASSWORDS_ENV)
    return Path(value) if value else None


def set_password(path: Path, name: str, password: str) -> None:
    """Add or replace a coach's line `name:salt:hash` in the list."""
    name = " ".join(name.split())
    if not name or ":" in name:
        raise AccountError("a name is needed, without ':'")
    if len(password) < 8:
        raise AccountError("a password needs at least 8 characters")
    salt = secrets.token_bytes(16)
    lines = [line for line in _read(path) if line.split(":", 1)[0] != name] if path.exists() else []
    lines.append(f"{name}:{salt.hex()}:{_hash(password, salt).hex()}")
    path.write_text("\n".join(lines) + "\n")


def _read(path: Path) -> list[str]:
    try:
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise AccountError(f"cannot read the password list: {exc}") from None


def check_password(path: Path, name: str, password: str) -> bool:
    """True when the list has this name with this password (constant-time comparison)."""
    for line in _read(path):
        who, salt, digest = (line.split(":") + ["", ""])[:3]
        if who == " ".join(name.split()):
            return hmac.compare_digest(_hash(password, bytes.fromhex(salt)).hex(), digest)
    return False
