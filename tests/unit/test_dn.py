"""Certificate subjects in Java's RFC 2253 form (X500Principal.getName()).

The expected strings are what OpenJDK 17's X500Principal.getName() prints for these
certificates (checked with a small Java program when this test was written).
"""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID, ObjectIdentifier

from strom.security.dn import DerError, rfc2253_name, subject_name

A = x509.NameAttribute
RDN = x509.RelativeDistinguishedName

CASES = [
    (x509.Name([A(NameOID.COUNTRY_NAME, "US"), A(NameOID.STATE_OR_PROVINCE_NAME, "CA"),
                A(NameOID.LOCALITY_NAME, "SF"), A(NameOID.ORGANIZATION_NAME, "Ex, Inc"),
                A(NameOID.ORGANIZATIONAL_UNIT_NAME, "a=b"), A(NameOID.COMMON_NAME, "#alice ")]),
     "CN=\\#alice\\ ,OU=a\\=b,O=Ex\\, Inc,L=SF,ST=CA,C=US"),
    (x509.Name([A(NameOID.DOMAIN_COMPONENT, "com"), A(NameOID.DOMAIN_COMPONENT, "example"),
                A(NameOID.USER_ID, "u1"), A(NameOID.EMAIL_ADDRESS, "a@x.org"),
                A(NameOID.COMMON_NAME, "  two  lead")]),
     "CN=\\ \\ two  lead,1.2.840.113549.1.9.1=#16076140782e6f7267,UID=u1,DC=example,DC=com"),
    (x509.Name([A(NameOID.COMMON_NAME, 'q"<>;+\\ x'), A(NameOID.SERIAL_NUMBER, "123"),
                A(NameOID.SURNAME, "Smith"), A(NameOID.GIVEN_NAME, "Jo"),
                A(NameOID.TITLE, "Dr"), A(NameOID.STREET_ADDRESS, "Main St 1"),
                A(NameOID.POSTAL_CODE, "12345")]),
     "2.5.4.17=#0c053132333435,STREET=Main St 1,2.5.4.12=#0c024472,2.5.4.42=#0c024a6f,"
     "2.5.4.4=#0c05536d697468,2.5.4.5=#1303313233,CN=q\\\"\\<\\>\\;\\+\\\\ x"),
    (x509.Name([RDN([A(NameOID.COMMON_NAME, "multi"),
                     A(NameOID.ORGANIZATIONAL_UNIT_NAME, "valued")]),
                RDN([A(NameOID.ORGANIZATION_NAME, "Ünïcødé ✓ _*!@")])]),
     "O=Ünïcødé ✓ _*!@,CN=multi+OU=valued"),
    (x509.Name([A(NameOID.COMMON_NAME, "bmp", _ASN1Type.BMPString),
                A(NameOID.ORGANIZATION_NAME, "t61", _ASN1Type.T61String),
                A(NameOID.ORGANIZATIONAL_UNIT_NAME, "ia5", _ASN1Type.IA5String),
                A(NameOID.COUNTRY_NAME, "DE"), A(NameOID.COMMON_NAME, "nul\x00in\rcr\r"),
                A(NameOID.COMMON_NAME, " ")]),
     "CN=\\ ,CN=nul\\00in\rcr\\\r,C=DE,OU=ia5,O=t61,CN=\\00b\\00m\\00p"),
    (x509.Name([A(ObjectIdentifier("1.2.3.4.5"), "custom"),
                A(NameOID.COMMON_NAME, "utf8", _ASN1Type.UTF8String),
                A(NameOID.COMMON_NAME, "ps", _ASN1Type.PrintableString)]),
     "CN=ps,CN=utf8,1.2.3.4.5=#0c06637573746f6d"),
]


def certificate(name: x509.Name) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    return cert.public_bytes(Encoding.DER)


@pytest.mark.parametrize(("name", "java"), CASES)
def test_subject_as_java_writes_it(name: x509.Name, java: str) -> None:
    assert subject_name(certificate(name)) == java
    assert rfc2253_name(name.public_bytes()) == java


def test_common_attributes_agree_with_rfc4514() -> None:
    name = x509.Name([A(NameOID.DOMAIN_COMPONENT, "org"), A(NameOID.COUNTRY_NAME, "US"),
                      A(NameOID.STATE_OR_PROVINCE_NAME, "New York"),
                      A(NameOID.LOCALITY_NAME, "Brooklyn"),
                      A(NameOID.ORGANIZATION_NAME, "Acme, Inc."),
                      A(NameOID.ORGANIZATIONAL_UNIT_NAME, "Ops"), A(NameOID.USER_ID, "u7"),
                      A(NameOID.COMMON_NAME, "svc-orders")])
    assert rfc2253_name(name.public_bytes()) == name.rfc4514_string()


@pytest.mark.parametrize("data", [b"", b"\x31\x00", b"\x30\x05\x31\x03", b"\x30\x82\xff\xff"])
def test_garbage_is_refused(data: bytes) -> None:
    with pytest.raises(DerError):
        rfc2253_name(data)
