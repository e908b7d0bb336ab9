"""Internal accounts (``AUTH_TYPE=internal``): a JSON file of SCRAM-SHA-1 keys, never passwords.

``./parley user add NAME`` (``python -m services.xmpp.users add NAME``) asks for a password twice
(or reads one line from stdin with ``--password-stdin``) and stores the account's RFC 5802 salt,
StoredKey and ServerKey. The broker reads the file again when it changes, so accounts added while
it runs can log in at once.
"""

from __future__ import annotations

import argparse
import base64
import getpass
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from .sasl import ScramCredential

DEFAULT_FILE = "config/xmpp/users.json"
_NAME = re.compile(r"^[a-z0-9][a-z0-9._\-]{0,63}$")


def users_path(configured: str = "") -> Path:
    return Path(configured or os.environ.get("XMPP_USERS_FILE") or DEFAULT_FILE)


def valid_name(name: str) -> bool:
    return bool(_NAME.match(name))


def _encode(cred: ScramCredential) -> dict[str, object]:
    b64 = base64.b64encode
    return {
        "salt": b64(cred.salt).decode(),
        "stored-key": b64(cred.stored_key).decode(),
        "server-key": b64(cred.server_key).decode(),
        "iterations": cred.iterations,
    }


def read_users(path: Path) -> dict[str, ScramCredential]:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    out: dict[str, ScramCredential] = {}
    for name, entry in (raw.get("users") or {}).items():
        out[name] = ScramCredential.from_config(
            entry["salt"], entry["stored-key"], entry["server-key"], int(entry["iterations"])
        )
    return out


def write_users(path: Path, users: Mapping[str, ScramCredential]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps({"users": {n: _encode(c) for n, c in sorted(users.items())}}, indent=2)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".users-")
    with os.fdopen(fd, "w") as f:
        f.write(data + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


class UserStore(Mapping[str, ScramCredential]):
    """The accounts of the file, read again when its modification time changes."""

    def __init__(self, path: Path, fixed: Mapping[str, ScramCredential] | None = None) -> None:
        self.path = path
        self.fixed = dict(fixed or {})
        self._mtime: float | None = None
        self._users: dict[str, ScramCredential] = {}
        self._refresh()

    def _refresh(self) -> None:
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            mtime = None
        if mtime != self._mtime:
            self._mtime = mtime
            try:
                self._users = read_users(self.path)
            except (ValueError, KeyError, TypeError):
                self._users = {}

    def __getitem__(self, key: str) -> ScramCredential:
        self._refresh()
        if key in self.fixed:
            return self.fixed[key]
        return self._users[key]

    def __iter__(self) -> Iterator[str]:
        self._refresh()
        return iter({**self._users, **self.fixed})

    def __len__(self) -> int:
        self._refresh()
        return len({**self._users, **self.fixed})


def main(argv: Iterable[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="parley user", description="Manage the broker's internal accounts.")
    p.add_argument("--file", default="", help=f"accounts file (default $XMPP_USERS_FILE or {DEFAULT_FILE})")
    sub = p.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="add an account or change its password")
    add.add_argument("name")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    rm = sub.add_parser("remove", help="remove an account")
    rm.add_argument("name")
    sub.add_parser("list", help="list the accounts")
    args = p.parse_args(list(argv) if argv is not None else None)
    path = users_path(args.file)
    users = read_users(path)
    if args.command == "list":
        for name in sorted(users):
            print(name)
        return 0
    name = args.name.lower()
    if not valid_name(name):
        p.error("names are 1-64 of a-z 0-9 . _ - starting with a letter or digit")
    if args.command == "remove":
        if users.pop(name, None) is None:
            print(f"no account {name}", file=sys.stderr)
            return 1
        write_users(path, users)
        print(f"removed {name}")
        return 0
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {name}: ")
        if getpass.getpass("again: ") != password:
            print("passwords differ", file=sys.stderr)
            return 1
    if len(password) < 8:
        print("a password has at least 8 characters", file=sys.stderr)
        return 1
    users[name] = ScramCredential.from_password(password)
    write_users(path, users)
    print(f"account {name} saved in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
