"""TLS for a listener: the server SSLContext, certificate reload, and the client's principal.

``TlsContext(settings)`` builds what ``asyncio.start_server(ssl=tls.context)`` needs. The
context handed to asyncio holds no key: its ``sni_callback`` (which OpenSSL calls for every
ClientHello, with or without a server name) moves each new connection to the current inner
context, which holds the keystore and the truststore. ``maybe_reload()`` (or the ``watch``
task) rebuilds that inner context when a file the settings name changes (size, mtime or
inode), so new handshakes use the new certificate and trusted CAs while connections already
made keep theirs. The protocol versions, cipher suites and client-auth mode come from the
settings and are the outer context's (OpenSSL takes them from the context a connection
starts with); they are not reloaded.

``principal_from_certificate`` names a client by its certificate as Kafka does: the subject in
Java's RFC 2253 form (see ``strom.security.dn``), rewritten by ``ssl.principal.mapping.rules``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from sys import UnraisableHookArgs

from strom.security.dn import subject_name
from strom.security.principal_rules import NoMatchingRule, PrincipalMapper
from strom.security.tls_material import Keystore, load, read_keystore, read_truststore
from strom.security.tls_settings import TLS13_DEFAULT_SUITES, TlsConfigError, TlsSettings

__all__ = ["NoMatchingRule", "TlsConfigError", "TlsContext", "TlsSettings",
           "principal_from_certificate"]

log = logging.getLogger(__name__)

FileStamp = tuple[int, int, int] | None  # (mtime ns, size, inode); None: missing
DEFAULT_WATCH_INTERVAL_S: Final = 10.0


def principal_from_certificate(der: bytes | None, mapper: PrincipalMapper) -> str | None:
    """The principal name of a peer certificate (DER), None without one (the caller then uses
    ANONYMOUS); NoMatchingRule when no mapping rule applies to its subject (Kafka then fails
    the authentication), DerError (a ValueError) for a certificate that cannot be read."""
    if der is None:
        return None
    return mapper.name(subject_name(der))


_previous_unraisable_hook: Callable[[UnraisableHookArgs], object] | None = None


def _unraisable(args: UnraisableHookArgs) -> None:
    """Python's ssl module cannot decode a server name (SNI) that is not ASCII: it prints the
    UnicodeDecodeError as "Exception ignored" and the handshake fails with an alert, which is
    the right answer; this logs that one case as a line instead of a traceback on stderr."""
    if args.exc_type is UnicodeDecodeError and isinstance(args.object, bytes):
        log.info("TLS handshake refused: the client's server name (SNI) is not ASCII: %r",
                 args.object[:64])
        return
    if _previous_unraisable_hook is not None:
        _previous_unraisable_hook(args)


def _quiet_sni_decode_errors() -> None:
    global _previous_unraisable_hook
    if sys.unraisablehook is not _unraisable:
        _previous_unraisable_hook = sys.unraisablehook
        sys.unraisablehook = _unraisable


class TlsContext:
    """A listener's server SSLContext whose certificates reload without a restart."""

    def __init__(self, settings: TlsSettings, label: str = "TLS") -> None:
        """Reads the key material; TlsConfigError (saying which setting or file to fix)."""
        _quiet_sni_decode_errors()
        self.settings = settings
        self.label = label
        self._stamps = self._file_stamps()
        self._current, keystore = self._build()
        self.context = self._base_context()
        self.context.sni_callback = self._select
        self._warn_unrestricted_suites()
        log.info("%s: serving %s (valid until %s)", label, keystore.subject,
                 keystore.not_after.strftime("%Y-%m-%d %H:%M UTC"))

    @property
    def current(self) -> ssl.SSLContext:
        """The inner context new handshakes use (replaced, never changed, by a reload)."""
        return self._current

    @property
    def mapper(self) -> PrincipalMapper:
        return self.settings.mapper

    def principal(self, peer: ssl.SSLObject | ssl.SSLSocket) -> str | None:
        """The principal name of a connection's client certificate (None: no certificate)."""
        return principal_from_certificate(peer.getpeercert(binary_form=True), self.mapper)

    def maybe_reload(self) -> bool:
        """Rebuilds the inner context if a watched file changed; True when it was replaced. A
        reload that fails (a file half written, a key not matching) keeps the current one."""
        stamps = self._file_stamps()
        if stamps == self._stamps:
            return False
        self._stamps = stamps
        try:
            inner, keystore = self._build()
        except Exception as exc:  # whatever the file holds, the listener keeps serving
            log.warning("%s: keeping the current certificates, the changed files cannot be "
                        "used: %s", self.label, exc)
            return False
        self._current = inner
        log.info("%s: reloaded %s: now serving %s (valid until %s)", self.label,
                 " and ".join(self.settings.watched_files), keystore.subject,
                 keystore.not_after.strftime("%Y-%m-%d %H:%M UTC"))
        return True

    async def watch(self, interval_s: float = DEFAULT_WATCH_INTERVAL_S) -> None:
        """Checks the files every `interval_s` seconds, forever (run it as a task)."""
        if not self.settings.watched_files:
            return
        while True:
            await asyncio.sleep(interval_s)
            self.maybe_reload()

    def _select(self, peer: ssl.SSLObject | ssl.SSLSocket, server_name: str | None,
                outer: ssl.SSLContext) -> None:
        peer.context = self._current

    def _base_context(self) -> ssl.SSLContext:
        """A server context with the settings' versions, suites and client-auth mode."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version, context.maximum_version = self.settings.versions()
        ciphers = self.settings.openssl_ciphers()
        if ciphers is not None:
            context.set_ciphers(ciphers)
        context.verify_mode = self.settings.verify_mode
        # as in Java, every certificate of the truststore is a trust anchor
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        return context

    def _build(self) -> tuple[ssl.SSLContext, Keystore]:
        keystore = read_keystore(self.settings)
        truststore = read_truststore(self.settings)
        context = self._base_context()
        load(context, keystore, truststore, self.settings)
        return context, keystore

    def _file_stamps(self) -> tuple[FileStamp, ...]:
        stamps: list[FileStamp] = []
        for path in self.settings.watched_files:
            try:
                stat = os.stat(path)
            except OSError:
                stamps.append(None)
            else:
                stamps.append((stat.st_mtime_ns, stat.st_size, stat.st_ino))
        return tuple(stamps)

    def _warn_unrestricted_suites(self) -> None:
        named = TLS13_DEFAULT_SUITES.intersection(self.settings.cipher_suites)
        if named and named != TLS13_DEFAULT_SUITES:
            log.warning("%s: ssl.cipher.suites names %s, but Python's ssl cannot choose among "
                        "TLSv1.3 suites: OpenSSL's three defaults stay enabled", self.label,
                        ", ".join(sorted(named)))
