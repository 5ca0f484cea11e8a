"""Signing keys, a JWKS file and signed tokens for OAUTHBEARER tests (no identity provider).

    private_key, jwks_path = make_keypair_and_jwks(tmp_path, "key-1")
    token = sign_token(private_key, "key-1", "alice", aud="kafka")
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, TypeAlias

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

_EC_CURVES: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1(),
}
_EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}


def generate_key(kind: str = "RSA") -> PrivateKey:
    """A new RSA (2048 bits) key, or an EC key on the curve ``kind`` ("P-256"...)."""
    if kind == "RSA":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(_EC_CURVES[kind])


def public_jwk(private_key: PrivateKey, kid: str | None, **members: Any) -> dict[str, Any]:
    """The public half of ``private_key`` as a JWK (``use: sig``), with ``members`` added."""
    public = private_key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(public, as_dict=True)
    jwk["use"] = "sig"
    if kid is not None:
        jwk["kid"] = kid
    jwk.update(members)
    return jwk


def write_jwks(path: Path, jwks: list[Any]) -> Path:
    path.write_text(json.dumps({"keys": jwks}))
    return path


def add_to_jwks(jwks_path: Path, private_key: PrivateKey, kid: str | None,
                **members: Any) -> None:
    """Add the public half of ``private_key`` to the JWKS file (a key rotation)."""
    keys = json.loads(jwks_path.read_text())["keys"] if jwks_path.exists() else []
    write_jwks(jwks_path, [*keys, public_jwk(private_key, kid, **members)])


def make_keypair_and_jwks(path: Path, kid: str | None, *, kind: str = "RSA",
                          keep: bool = False) -> tuple[PrivateKey, Path]:
    """A new key pair and a JWKS file holding its public key: ``path`` itself, or
    ``path / "jwks.json"`` if ``path`` is a directory. ``keep``: add to the keys already there."""
    jwks_path = path / "jwks.json" if path.is_dir() else path
    private_key = generate_key(kind)
    if keep:
        add_to_jwks(jwks_path, private_key, kid)
    else:
        write_jwks(jwks_path, [public_jwk(private_key, kid)])
    return private_key, jwks_path


def default_algorithm(private_key: PrivateKey) -> str:
    if isinstance(private_key, rsa.RSAPrivateKey):
        return "RS256"
    return _EC_ALGORITHMS[private_key.curve.name]


def sign_token(private_key: PrivateKey, kid: str | None, sub: str | None,
               lifetime_s: float = 300, *, alg: str | None = None,
               headers: dict[str, Any] | None = None, **claims: Any) -> str:
    """A JWT signed by ``private_key``: ``sub``, ``iat`` now, ``exp`` ``lifetime_s`` later (a
    negative lifetime: already expired), plus ``claims``; a claim given as None is left out
    (``iat=None``). ``alg`` defaults to the key's (RS256, ES256/384/512 by curve)."""
    now = int(time.time())
    payload: dict[str, Any] = {"sub": sub, "iat": now, "exp": now + int(lifetime_s), **claims}
    payload = {name: value for name, value in payload.items() if value is not None}
    header = dict(headers or {})
    if kid is not None:
        header["kid"] = kid
    return jwt.encode(payload, private_key, algorithm=alg or default_algorithm(private_key),
                      headers=header)
