"""Accounts: who may sign in (a password list, or OIDC), their roles in the project, and the admin audit log."""

from __future__ import annotations

import getpass
import hashlib
import hmac
import logging
import os
import secrets
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from curation import store
from curation.project import Project

PASSWORDS_ENV = "FORMCHECK_PASSWORDS"  # path of the list; unset = no password sign-in (the local default)
ROLES = ("viewer", "coach", "lead", "admin")  # each role may do everything the roles before it may
LIST_DEFAULT_ROLE = "coach"  # a name on the password list without a role in the project: what the list meant before
NAME_MAX = 60  # characters; longer names are refused, never cut (a cut name could be someone else's)
PASSWORD_MIN, PASSWORD_MAX = 8, 1024

# scrypt cost: OWASP's password storage advice (n=2**17, r=8, p=1; 128 MiB, about 0.3-0.6 s here). Each line
# stores its own parameters, so lines written with the former n=2**14 still verify (and are rehashed on sign-in).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**17, 8, 1
LEGACY_PARAMS = (2**14, 8, 1)  # lines `name:salt:hash` written before the parameters were stored
MAX_PARAMS = (2**20, 16, 4)  # a line asking for more is malformed (a list edited to exhaust memory or time)

log = logging.getLogger(__name__)


class AccountError(ValueError):
    """A bad name, role or password, an unreadable password list, or an account change that is refused."""


class PasswordListUnreadable(AccountError):
    """The configured password list cannot be read (its message names a server path: for the log and the CLI)."""


@dataclass(frozen=True)
class Entry:
    """One line of the password list."""

    name: str
    salt: bytes
    digest: bytes
    params: tuple[int, int, int]  # scrypt n, r, p


@dataclass
class PasswordList:
    """The parsed list: its entries by name, and one sentence per line that was skipped."""

    entries: dict[str, Entry]
    problems: list[str]


# ---------------------------------------------------------------- names and roles


def clean_name(name: str) -> str:
    """A person's name as stored: whitespace collapsed; refused when empty, longer than NAME_MAX, holding a
    ':' (the list separator) or any control or invisible formatting character (two names must not look alike)."""
    name = " ".join(unicodedata.normalize("NFC", str(name or "")).split())
    if not name:
        raise AccountError("type a name")
    if len(name) > NAME_MAX:
        raise AccountError(f"a name has at most {NAME_MAX} characters")
    if ":" in name or any(unicodedata.category(ch) in ("Cc", "Cf", "Co", "Cs", "Zl", "Zp") for ch in name):
        raise AccountError("a name cannot hold ':' or control or invisible characters")
    return name


def check_role(role: str) -> str:
    """The role if it is one of ROLES."""
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    return role


def allows(role: str | None, need: str) -> bool:
    """True when `role` may do what `need` may (roles are ordered viewer < coach < lead < admin)."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(check_role(need))


# ---------------------------------------------------------------- the password list


def password_file() -> Path | None:
    """The configured password list, or None when password sign-in is off."""
    value = os.environ.get(PASSWORDS_ENV)
    return Path(value) if value else None


def _hash(password: str, salt: bytes, params: tuple[int, int, int]) -> bytes:
    n, r, p = params
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32, maxmem=2 * 128 * r * n * p + 2**20)


_DUMMY = Entry("", b"\0" * 16, b"\0" * 32, (SCRYPT_N, SCRYPT_R, SCRYPT_P))


def _parse(line: str) -> Entry:
    fields = line.split(":")
    if len(fields) == 3:
        name, salt, digest = fields
        params = LEGACY_PARAMS
    elif len(fields) == 7 and fields[1] == "scrypt":
        name, _, n, r, p, salt, digest = fields
        params = (int(n), int(r), int(p))
    else:
        raise ValueError("expected name:scrypt:n:r:p:salt:hash")
    n, r, p = params
    if n < 2 or n & (n - 1) or not all(0 < v <= most for v, most in zip(params, MAX_PARAMS)):
        raise ValueError("scrypt parameters out of range")
    entry = Entry(clean_name(name), bytes.fromhex(salt), bytes.fromhex(digest), params)
    if len(entry.salt) < 16 or len(entry.digest) != 32:
        raise ValueError("salt or hash of the wrong length")
    return entry


def read_list(path: Path) -> PasswordList:
    """Parse the list; a malformed or repeated line is skipped and reported (without its content, which may
    hold a hash), so one bad line never locks everyone else out."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PasswordListUnreadable(f"cannot read the password list: {exc}") from None
    result = PasswordList({}, [])
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            entry = _parse(line.strip())
        except (ValueError, AccountError) as exc:
            result.problems.append(f"line {number} skipped: {exc}")
            continue
        if entry.name in result.entries:
            result.problems.append(f"line {number} skipped: {entry.name!r} is listed twice (the first line counts)")
            continue
        result.entries[entry.name] = entry
    return result


def _format(entry: Entry) -> str:
    n, r, p = entry.params
    return f"{entry.name}:scrypt:{n}:{r}:{p}:{entry.salt.hex()}:{entry.digest.hex()}"


def _write_list(path: Path, entries: list[Entry], keep_lines: list[str]) -> None:
    """Replace the list atomically with a file only its owner can read (0600), whatever the umask allows."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in keep_lines + [_format(e) for e in entries]))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _rewrite(path: Path, name: str, entry: Entry | None) -> None:
    """Replace (or, with entry None, drop) `name`'s line; every other line, even a malformed one, is kept."""
    lines = []
    if path.exists():
        try:
            lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise PasswordListUnreadable(f"cannot read the password list: {exc}") from None
    kept = [line for line in lines if line.split(":", 1)[0] != name]
    _write_list(path, [entry] if entry else [], kept)


def set_password(path: Path, name: str, password: str) -> None:
    """Add or replace a person's line `name:scrypt:n:r:p:salt:hash` in the list (written 0600)."""
    name = clean_name(name)
    _password_rules(password)
    salt = secrets.token_bytes(16)
    params = (SCRYPT_N, SCRYPT_R, SCRYPT_P)
    _rewrite(path, name, Entry(name, salt, _hash(password, salt, params), params))


def remove_password(path: Path, name: str) -> bool:
    """Drop a person's line; False when the list had none."""
    name = clean_name(name)
    if not path.exists() or name not in read_list(path).entries:
        return False
    _rewrite(path, name, None)
    return True


def check_password(path: Path, name: str, password: str) -> bool:
    """True when the list has this name with this password.

    An unknown or invalid name costs the same scrypt work as a known one (hashed against a dummy line), so the
    time taken does not tell which names exist; a line with cheaper legacy parameters is padded the same way.
    """
    listed = read_list(path)
    for problem in listed.problems:  # said at each sign-in (not at each page run); the Admin page shows them too
        log.warning("password list %s: %s", path, problem)
    try:
        entry = listed.entries.get(clean_name(name))
    except AccountError:
        entry = None
    target = entry or _DUMMY
    digest = _hash(password[:PASSWORD_MAX], target.salt, target.params)
    if target.params != _DUMMY.params:
        _hash(password[:PASSWORD_MAX], _DUMMY.salt, _DUMMY.params)
    return hmac.compare_digest(digest, target.digest) and entry is not None


# ---------------------------------------------------------------- roles in the project


@dataclass(frozen=True)
class Account:
    """A signed-in person: the name their labels carry and their role in this project."""

    name: str
    role: str
    method: str  # "password" or "oidc"


def sign_in(project: Project, path: Path, name: str, password: str) -> Account:
    """Check a name and password against the list; the account with its role in the project."""
    if not check_password(path, name, password):
        raise AccountError("Unknown name or wrong password.")
    name = clean_name(name)
    entry = read_list(path).entries[name]
    if entry.params != _DUMMY.params:  # a legacy line: store it again at today's cost
        try:
            set_password(path, name, password)
        except (OSError, AccountError) as exc:
            log.warning("could not rehash %r in %s: %s", name, path, exc)
    account = current_account(project, name, "password")
    if account is None:
        raise AccountError("Unknown name or wrong password.")
    store.add_annotator(project, name)
    return account


def current_account(project: Project, name: str, method: str) -> Account | None:
    """The account as it stands now (roles and lists change while a session lasts), or None when it is gone.

    A name on the password list without a role in the project is a coach; with OIDC, only the people an admin
    added (by e-mail address) get in.
    """
    row = store.get_account(project, name)
    if method == "password":
        path = password_file()
        if path is None or name not in read_list(path).entries:
            return None
        return Account(name, row["role"] if row else LIST_DEFAULT_ROLE, method)
    return Account(name, row["role"], method) if row else None


def cli_actor() -> str:
    """How the command line appears in the audit log: `cli:<login>` (no account name can hold ':')."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:?"


def _password_rules(password: str) -> None:
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise AccountError(f"a password needs {PASSWORD_MIN} to {PASSWORD_MAX} characters")


def add_user(project: Project, name: str, role: str, actor: str, password: str | None = None,
             path: Path | None = None) -> str:
    """Give a person a role in the project (adding them if new), and a password on the list when one is
    given; each change audited under `actor`. Everything is checked before anything is written."""
    name, role = clean_name(name), check_role(role)
    if password is not None:
        if path is None:
            raise AccountError("no password list is configured: set $FORMCHECK_PASSWORDS or pass --file")
        _password_rules(password)
    store.put_account(project, name, role, actor)
    if password is not None:
        set_password(path, name, password)
        store.record_audit(project, actor, "password set", name)
    return name


def set_role(project: Project, name: str, role: str, actor: str, path: Path | None = None) -> None:
    """Change the role of someone who has an account or a line on the password list; audited. The last admin
    cannot be demoted."""
    name, role = clean_name(name), check_role(role)
    listed = path is not None and path.exists() and name in read_list(path).entries
    if not listed and store.get_account(project, name) is None:
        raise AccountError(f"no user {name!r}: add them first")
    store.put_account(project, name, role, actor)


def remove_user(project: Project, name: str, actor: str, path: Path | None = None) -> None:
    """Take a person's role (and their line in the password list) away; audited. Their labels stay."""
    name = clean_name(name)
    store.delete_account(project, name, actor)
    if path is not None and remove_password(path, name):
        store.record_audit(project, actor, "password removed", name)


def list_users(project: Project, path: Path | None = None) -> list[dict]:
    """Everyone with a role or a password line: name, role, whether they are on the list."""
    listed = read_list(path).entries if path is not None and path.exists() else {}
    rows = {a["name"]: {**a, "on_password_list": a["name"] in listed} for a in store.list_accounts(project)}
    for name in listed.keys() - rows.keys():
        rows[name] = {"name": name, "role": LIST_DEFAULT_ROLE, "on_password_list": True, "created_at": None,
                      "updated_at": None}
    return [rows[k] for k in sorted(rows)]
