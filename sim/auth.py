"""Signature rules of each venue, implemented from the venues' documentation.

Pure functions: compute the expected signature for a payload, or verify one.
The simulator keeps its own copy so a client bug cannot agree with itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from functools import lru_cache
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

# Fixed Ed25519 test key pair for `sim-ed25519-key` (raw 32-byte private key, base64).
# Never a real credential: it only lets tests and demos sign against the simulator.
TEST_ED25519_PRIVATE_KEY_B64 = base64.b64encode(hashlib.sha256(b"hft-sim ed25519 test key").digest()).decode()


def _derive_public(priv_b64: str) -> str:
    priv = Ed25519PrivateKey.from_private_bytes(base64.b64decode(priv_b64))
    raw = priv.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


TEST_ED25519_PUBLIC_KEY_B64 = _derive_public(TEST_ED25519_PRIVATE_KEY_B64)


@lru_cache(maxsize=64)
def load_ed25519_public(text: str) -> Ed25519PublicKey:
    """Accept a PEM public key or base64 of the raw 32 bytes."""
    t = text.strip()
    if t.startswith("-----BEGIN"):
        key = serialization.load_pem_public_key(t.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("not an Ed25519 public key")
        return key
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(t))


def ed25519_sign_b64(priv_b64: str, payload: str) -> str:
    """Sign like a Binance Ed25519 client would (used by tests and the benchmark client)."""
    priv = Ed25519PrivateKey.from_private_bytes(base64.b64decode(priv_b64))
    return base64.b64encode(priv.sign(payload.encode())).decode()


def ed25519_verify_b64(pub_text: str, payload: str, sig_b64: str) -> bool:
    try:
        load_ed25519_public(pub_text).verify(base64.b64decode(sig_b64, validate=True), payload.encode())
        return True
    except Exception:
        return False


# -- Binance ---------------------------------------------------------------
_KEYED: dict[tuple[str, str], Any] = {}


def keyed_hmac(secret: str, digest: str = "sha256") -> Any:
    """An HMAC object with the key already absorbed: `.copy()` it per message (saves re-keying)."""
    h = _KEYED.get((secret, digest))
    if h is None:
        if len(_KEYED) > 1024:
            _KEYED.clear()
        h = _KEYED[(secret, digest)] = hmac.new(secret.encode(), digestmod=digest)
    return h


_SHA256_PADS: dict[str, tuple[Any, Any]] = {}


def _sha256_pads(secret: str) -> tuple[Any, Any]:
    """HMAC-SHA256 (RFC 2104) inner and outer hash states with the padded key absorbed."""
    pads = _SHA256_PADS.get(secret)
    if pads is None:
        key = secret.encode()
        if len(key) > 64:
            key = hashlib.sha256(key).digest()
        key = key.ljust(64, b"\0")
        if len(_SHA256_PADS) > 1024:
            _SHA256_PADS.clear()
        pads = _SHA256_PADS[secret] = (hashlib.sha256(bytes(b ^ 0x36 for b in key)),
                                       hashlib.sha256(bytes(b ^ 0x5C for b in key)))
    return pads


def binance_hmac_hex(secret: str, payload: str) -> str:
    """HMAC-SHA256 hex digest from prepared pad states: the hmac module's copy/update/hexdigest
    wrappers cost a third more per request (every signed order is verified)."""
    inner, outer = _sha256_pads(secret)
    inner = inner.copy()
    inner.update(payload.encode())
    outer = outer.copy()
    outer.update(inner.digest())
    return outer.hexdigest()


_WS_KEY_ORDER: dict[tuple, list[str]] = {}  # a request's keys as sent -> sorted, without `signature`


def binance_ws_payload(params: dict) -> str:
    """WS API: every param except `signature`, sorted by key, `k=v` joined with `&`, no encoding.
    A client sends the same keys in the same order on every order: their sorting is kept."""
    sent = tuple(params)
    keys = _WS_KEY_ORDER.get(sent)
    if keys is None:
        if len(_WS_KEY_ORDER) > 4096:
            _WS_KEY_ORDER.clear()
        keys = _WS_KEY_ORDER[sent] = [k for k in sorted(params) if k != "signature"]
    return "&".join([k + "=" + (v if v.__class__ is str else _ws_value(v)) for k in keys for v in (params[k],)])


def _ws_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def binance_rest_payload(query: str, body: bytes) -> str:
    """REST: query string + body as sent, without the `signature` parameter."""
    parts = [p for p in query.split("&") if p and not p.startswith("signature=")]
    bparts = [p for p in body.decode("utf-8", "replace").split("&") if p and not p.startswith("signature=")]
    q = "&".join(parts)
    b = "&".join(bparts)
    return q + b


def hmac_hex_equal(expected_hex: str, given: str) -> bool:
    return hmac.compare_digest(expected_hex, given.lower())


# -- OKX -------------------------------------------------------------------
def okx_sign(secret: str, prehash: str) -> str:
    h = keyed_hmac(secret).copy()
    h.update(prehash.encode())
    return base64.b64encode(h.digest()).decode()


def okx_ws_login_sign(secret: str, timestamp: str) -> str:
    return okx_sign(secret, timestamp + "GET" + "/users/self/verify")


# -- Gate ------------------------------------------------------------------
EMPTY_SHA512 = hashlib.sha512(b"").hexdigest()


def gate_rest_sign(secret: str, method: str, path: str, query: str, body: bytes, ts: str) -> str:
    s = "\n".join((method.upper(), path, query, hashlib.sha512(body).hexdigest(), ts))
    return hmac.new(secret.encode(), s.encode(), hashlib.sha512).hexdigest()


def gate_ws_api_sign(secret: str, event: str, channel: str, req_param: str, ts: str) -> str:
    s = f"{event}\n{channel}\n{req_param}\n{ts}"
    return hmac.new(secret.encode(), s.encode(), hashlib.sha512).hexdigest()


def gate_ws_channel_sign(secret: str, channel: str, event: str, t: int | str) -> str:
    s = f"channel={channel}&event={event}&time={t}"
    return hmac.new(secret.encode(), s.encode(), hashlib.sha512).hexdigest()
