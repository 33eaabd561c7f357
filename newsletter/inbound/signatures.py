"""Checking who sent a webhook: Amazon SNS's message signature (an X.509 certificate, SHA1 or SHA256 with RSA) and
SendGrid's signed events (ECDSA P-256 over the timestamp and the body); cryptography's home. Pure: bytes in, yes or no.
"""

from __future__ import annotations

import base64
import binascii

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

__all__ = ["verify_sendgrid", "verify_sns"]


def verify_sns(string_to_sign: bytes, signature_b64: str, version: str, cert_pem: bytes) -> bool:
    """Whether ``signature_b64`` is the certificate's key's signature of ``string_to_sign`` (SignatureVersion 1:
    SHA1withRSA; 2: SHA256withRSA)."""
    algorithm: hashes.HashAlgorithm
    if version == "1":
        algorithm = hashes.SHA1()  # noqa: S303 - SNS SignatureVersion 1 is SHA1withRSA, by AWS's definition
    elif version == "2":
        algorithm = hashes.SHA256()
    else:
        return False
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        key = x509.load_pem_x509_certificate(cert_pem).public_key()
    except (ValueError, binascii.Error):
        return False
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    try:
        key.verify(signature, string_to_sign, padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        return False
    return True


def verify_sendgrid(public_key_b64: str, timestamp: str, body: bytes, signature_b64: str) -> bool:
    """Whether ``signature_b64`` (header X-Twilio-Email-Event-Webhook-Signature) is SendGrid's ECDSA signature of
    ``timestamp`` (X-Twilio-Email-Event-Webhook-Timestamp) followed by the raw body."""
    try:
        key = load_der_public_key(base64.b64decode(public_key_b64, validate=True))
        signature = base64.b64decode(signature_b64, validate=True)
    except (ValueError, binascii.Error):
        return False
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return False
    try:
        key.verify(signature, timestamp.encode("utf-8") + body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True
