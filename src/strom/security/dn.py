"""A certificate subject as Java's ``X500Principal.getName()`` writes it (RFC 2253).

Kafka names a TLS client by this string (then ``ssl.principal.mapping.rules`` rewrite it), so
strom writes it the same way, byte for byte where it can, from the certificate's DER:

- the relative distinguished names in reverse order (the last one first), joined by ``,``;
  the attributes of a multi-valued one joined by ``+`` in their encoded order;
- the RFC 2253 keywords Java knows: CN, C, L, ST, O, OU, STREET, DC and UID; every other
  attribute (emailAddress, serialNumber, SN, GN, title...) as its dotted OID with the value
  as ``#`` and the hex of its DER encoding: ``1.2.840.113549.1.9.1=#16...``;
- string values (UTF8String, PrintableString, IA5String, T61String, GeneralString,
  BMPString) with ``, = + < > # ; " \\`` escaped by a backslash anywhere, a NUL as ``\\00``
  and leading or trailing spaces (and carriage returns) each escaped; values of other types
  in the ``#`` hex form.

Like Java 17 and later, string bytes are read as UTF-8 whatever the string type (a BMPString
name therefore comes out as Java writes it, not as its characters). ``cryptography``'s
``rfc4514_string()`` differs from this in the escaping (it leaves ``=`` and an inner ``#``
alone, escapes only the first of several leading spaces) and writes unknown attributes as
``OID=text`` instead of hex.
"""

from __future__ import annotations

from typing import Final

_SEQUENCE: Final = 0x30
_SET: Final = 0x31
_OID: Final = 0x06
_CONTEXT_0: Final = 0xA0  # TBSCertificate's optional [0] version

# Java's RFC 2253 keywords (sun.security.x509.AVAKeyword entries marked RFC 2253 compliant)
KEYWORDS: Final = {
    "2.5.4.3": "CN",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.9": "STREET",
    "0.9.2342.19200300.100.1.25": "DC",
    "0.9.2342.19200300.100.1.1": "UID",
}
# the universal string types Java writes as text: UTF8, Printable, T61, IA5, General, BMP
_STRING_TAGS: Final = frozenset({0x0C, 0x13, 0x14, 0x16, 0x1B, 0x1E})
_ESCAPED: Final = frozenset(',=+<>#;"\\')


class DerError(ValueError):
    """Bytes that are not the DER this module expects."""


def _element(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, content start, end) of the DER element at data[pos]."""
    if pos + 2 > len(data):
        raise DerError("truncated DER element")
    tag, length = data[pos], data[pos + 1]
    if tag & 0x1F == 0x1F:
        raise DerError("multi-byte DER tags are not expected in a certificate name")
    start = pos + 2
    if length & 0x80:
        count = length & 0x7F
        if not 1 <= count <= 4 or start + count > len(data):
            raise DerError("bad DER length")
        length = int.from_bytes(data[start:start + count], "big")
        start += count
    end = start + length
    if end > len(data):
        raise DerError("DER element runs past its container")
    return tag, start, end


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(tag, header start, content start, end) of each element in data[start:end]."""
    children = []
    pos = start
    while pos < end:
        tag, content, stop = _element(data, pos)
        if stop > end:
            raise DerError("DER element runs past its container")
        children.append((tag, pos, content, stop))
        pos = stop
    return children


def _oid(content: bytes) -> str:
    """The dotted form of an OBJECT IDENTIFIER's content."""
    arcs: list[int] = []
    value = 0
    for byte in content:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if not arcs or content[-1] & 0x80:
        raise DerError("bad OBJECT IDENTIFIER")
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(arc) for arc in head + arcs[1:])


def _escape(text: str) -> str:
    """A string value with Java's RFC 2253 escapes."""
    joined = "".join("\\" + c if c in _ESCAPED else "\\00" if c == "\0" else c for c in text)
    lead = len(joined) - len(joined.lstrip(" \r"))  # leading spaces, each escaped
    trail = len(joined.rstrip(" \r"))  # where the trailing ones start
    return "".join("\\" + c if i < lead or i >= trail else c for i, c in enumerate(joined))


def _attribute(data: bytes, start: int, end: int) -> str:
    """One AttributeTypeAndValue (the content of its SEQUENCE) as TYPE=value."""
    parts = _children(data, start, end)
    if len(parts) != 2 or parts[0][0] != _OID:
        raise DerError("an attribute is not SEQUENCE { OID, value }")
    oid = _oid(data[parts[0][2]:parts[0][3]])
    tag, header, content, stop = parts[1]
    keyword = KEYWORDS.get(oid)
    if keyword is None or tag not in _STRING_TAGS:
        return f"{keyword or oid}=#{data[header:stop].hex()}"
    return f"{keyword}={_escape(data[content:stop].decode('utf-8', 'replace'))}"


def rfc2253_name(name_der: bytes) -> str:
    """A DER X.501 Name (a SEQUENCE of RDN SETs) as Java's RFC 2253 string."""
    tag, start, end = _element(name_der, 0)
    if tag != _SEQUENCE:
        raise DerError("a Name is not a SEQUENCE")
    rdns = []
    for rdn_tag, _, rdn_start, rdn_end in _children(name_der, start, end):
        if rdn_tag != _SET:
            raise DerError("a relative distinguished name is not a SET")
        attributes = []
        for attr_tag, _, attr_start, attr_end in _children(name_der, rdn_start, rdn_end):
            if attr_tag != _SEQUENCE:
                raise DerError("an attribute is not a SEQUENCE")
            attributes.append(_attribute(name_der, attr_start, attr_end))
        rdns.append("+".join(attributes))
    return ",".join(reversed(rdns))


def subject_name(certificate_der: bytes) -> str:
    """The subject of a DER X.509 certificate as Java's RFC 2253 string."""
    tag, start, end = _element(certificate_der, 0)
    if tag != _SEQUENCE:
        raise DerError("a certificate is not a SEQUENCE")
    tbs_tag, _, tbs_start, tbs_end = _children(certificate_der, start, end)[0]
    if tbs_tag != _SEQUENCE:
        raise DerError("a certificate's TBSCertificate is not a SEQUENCE")
    fields = _children(certificate_der, tbs_start, tbs_end)
    if fields and fields[0][0] == _CONTEXT_0:
        fields = fields[1:]
    # serialNumber, signature, issuer, validity, subject
    if len(fields) < 5:
        raise DerError("a certificate has no subject")
    _, header, _, stop = fields[4]
    return rfc2253_name(certificate_der[header:stop])
