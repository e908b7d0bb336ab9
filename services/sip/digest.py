"""HTTP Digest for SIP (RFC 3261 §22.4, RFC 2617 qop=auth, RFC 8760 SHA-256). No I/O.

Nonces are stateless: ``<issued-at hex>.<HMAC(secret, issued-at, realm)>``, so any number of
challenges costs no memory; a nonce older than ``nonce_ttl`` is answered with ``stale=true``. A
nonce-count seen before for the same nonce is refused (bounded replay window per nonce).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

ALGORITHMS = {"SHA-256": hashlib.sha256, "MD5": hashlib.md5}
MAX_TRACKED_NONCES = 4096


def _h(algorithm: str, text: str) -> str:
    return ALGORITHMS[algorithm](text.encode()).hexdigest()


def parse_credentials(value: str) -> dict[str, str] | None:
    """``Digest username="a", realm="r", ...`` -> dict (lower-cased keys); None if not Digest."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        return None
    out: dict[str, str] = {}
    i, n = 0, len(rest)
    while i < n and len(out) < 16:
        while i < n and rest[i] in " ,\t":
            i += 1
        eq = rest.find("=", i)
        if eq < 0:
            break
        key = rest[i:eq].strip().lower()
        i = eq + 1
        if i < n and rest[i] == '"':
            end = i + 1
            buf = []
            while end < n and rest[end] != '"':
                if rest[end] == "\\" and end + 1 < n:
                    end += 1
                buf.append(rest[end])
                end += 1
            value_text = "".join(buf)
            i = end + 1
        else:
            end = rest.find(",", i)
            end = n if end < 0 else end
            value_text = rest[i:end].strip()
            i = end
        if key:
            out[key] = value_text
    return out


@dataclass(frozen=True)
class Verdict:
    ok: bool
    username: str = ""
    stale: bool = False
    reason: str = ""


class DigestAuth:
    """Challenges and checks digest credentials against ``accounts`` (username -> password)."""

    def __init__(self, realm: str, accounts: dict[str, str], *, nonce_ttl: float = 300.0,
                 secret: bytes | None = None) -> None:
        self.realm = realm
        self.accounts = accounts
        self.nonce_ttl = nonce_ttl
        self.secret = secret or secrets.token_bytes(32)
        self._counts: OrderedDict[str, int] = OrderedDict()

    def _sign(self, issued: str) -> str:
        return hmac.new(self.secret, f"{issued}:{self.realm}".encode(), hashlib.sha256).hexdigest()[:32]

    def new_nonce(self, now: float | None = None) -> str:
        # the issue time (for staleness) and a random salt: two challenges in the same millisecond
        # must not share a nonce, or the second client's nc=1 would look like a replay
        issued = format(int((time.time() if now is None else now) * 1000), "x") + "-" + secrets.token_hex(6)
        return f"{issued}.{self._sign(issued)}"

    def challenges(self, *, stale: bool = False, now: float | None = None) -> list[str]:
        """WWW-Authenticate values: SHA-256 first, then MD5 (RFC 8760 §2.4)."""
        nonce = self.new_nonce(now)
        opaque = self._sign("opaque")[:16]
        tail = ", stale=true" if stale else ""
        return [
            f'Digest realm="{self.realm}", nonce="{nonce}", opaque="{opaque}", algorithm={alg}, qop="auth"{tail}'
            for alg in ("SHA-256", "MD5")
        ]

    def _nonce_age(self, nonce: str, now: float) -> float | None:
        issued, dot, sig = nonce.partition(".")
        if not dot or len(issued) > 32 or not hmac.compare_digest(sig, self._sign(issued)):
            return None
        try:
            return now - int(issued.split("-", 1)[0], 16) / 1000.0
        except ValueError:
            return None

    def check(self, header: str | None, method: str, *, now: float | None = None) -> Verdict:
        if not header:
            return Verdict(False, reason="no credentials")
        creds = parse_credentials(header)
        if creds is None:
            return Verdict(False, reason="not digest")
        now = time.time() if now is None else now
        username = creds.get("username", "")
        algorithm = creds.get("algorithm", "MD5").upper()
        if algorithm not in ALGORITHMS:
            return Verdict(False, username, reason="unsupported algorithm")
        if creds.get("realm") != self.realm:
            return Verdict(False, username, reason="wrong realm")
        nonce = creds.get("nonce", "")
        age = self._nonce_age(nonce, now)
        if age is None or age < -5:
            return Verdict(False, username, reason="bad nonce")
        if age > self.nonce_ttl:
            return Verdict(False, username, stale=True, reason="stale nonce")
        password = self.accounts.get(username)
        if password is None:
            # compute anyway so the answer takes as long as for a real account
            password = secrets.token_hex(8)
            known = False
        else:
            known = True
        uri = creds.get("uri", "")
        ha1 = _h(algorithm, f"{username}:{self.realm}:{password}")
        ha2 = _h(algorithm, f"{method}:{uri}")
        qop = creds.get("qop")
        if qop:
            if qop != "auth":
                return Verdict(False, username, reason="unsupported qop")
            nc, cnonce = creds.get("nc", ""), creds.get("cnonce", "")
            if len(nc) != 8 or not cnonce:
                return Verdict(False, username, reason="bad nc/cnonce")
            try:
                count = int(nc, 16)
            except ValueError:
                return Verdict(False, username, reason="bad nc")
            expected = _h(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
        else:
            count = 0
            expected = _h(algorithm, f"{ha1}:{nonce}:{ha2}")
        if not hmac.compare_digest(expected, creds.get("response", "").lower()) or not known:
            return Verdict(False, username, reason="wrong credentials")
        if qop:
            last = self._counts.get(nonce, 0)
            if count <= last:
                return Verdict(False, username, reason="replayed nonce count")
            self._counts[nonce] = count
            self._counts.move_to_end(nonce)
            while len(self._counts) > MAX_TRACKED_NONCES:
                self._counts.popitem(last=False)
        return Verdict(True, username)


def answer(challenge: str, username: str, password: str, method: str, uri: str,
           cnonce: str = "0a4f113b", nc: int = 1) -> str:
    """The Authorization value for a challenge (what a UA does; used by tests and the bench)."""
    params = parse_credentials(challenge) or {}
    algorithm = params.get("algorithm", "MD5").upper()
    realm, nonce = params.get("realm", ""), params.get("nonce", "")
    ha1 = _h(algorithm, f"{username}:{realm}:{password}")
    ha2 = _h(algorithm, f"{method}:{uri}")
    ncs = f"{nc:08x}"
    resp = _h(algorithm, f"{ha1}:{nonce}:{ncs}:{cnonce}:auth:{ha2}")
    opaque = params.get("opaque")
    extra = f', opaque="{opaque}"' if opaque else ""
    return (f'Digest username="{username}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
            f'response="{resp}", algorithm={algorithm}, qop=auth, nc={ncs}, cnonce="{cnonce}"{extra}')
