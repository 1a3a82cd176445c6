"""Asking a TLS client for its certificate without letting OpenSSL judge it.

API Management negotiates client certificates with optional verification: any certificate the
client sends completes the handshake, and the policies decide (`validate-client-certificate`,
`context.Request.Certificate.Verify()`), so an untrusted or expired certificate gets the API's 401,
not a failed handshake. Python's `ssl` offers only CERT_OPTIONAL, which aborts the handshake on a
certificate its store cannot verify, and applies to a whole context, while API Management asks per
hostname. So, as nginx does in its SNI callback, the gateway calls OpenSSL itself on the one
connection whose hostname asks: `SSL_set_verify(ssl, SSL_VERIFY_PEER, accept-all callback)`,
on the libssl that Python's `_ssl` module is linked to.

The C pointers are read from CPython's `_ssl` objects (`PySSLContext.ctx`, `PySSLSocket.ssl`);
their layout is checked once, against OpenSSL itself, before anything is written (`available`).
When the check fails (another Python implementation or layout), no certificate is requested and
the gateway says so once: the policies then see no certificate and refuse (401), never the reverse.
"""

from __future__ import annotations

import _ssl
import ctypes
import logging
import ssl
import sys
from typing import Any

log = logging.getLogger("portico.gateway")

_SSL_VERIFY_PEER = 0x01
_HEAD = object.__basicsize__  # PyObject_HEAD
_PTR = ctypes.sizeof(ctypes.c_void_p)
_VerifyCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)


def _accept(preverify_ok: int, store: int | None) -> int:
    return 1  # the chain is judged by the policies, against the gateway's trusted CAs


_ACCEPT = _VerifyCallback(_accept)  # kept alive for as long as OpenSSL may call it


class _OpenSsl:
    def __init__(self) -> None:
        lib = ctypes.CDLL(getattr(_ssl, "__file__", None))  # the _ssl module's libssl
        self.set_verify = lib.SSL_set_verify
        self.set_verify.argtypes = [ctypes.c_void_p, ctypes.c_int, _VerifyCallback]
        self.set_verify.restype = None
        self.get_verify_mode = lib.SSL_get_verify_mode
        self.get_verify_mode.argtypes = [ctypes.c_void_p]
        self.get_verify_mode.restype = ctypes.c_int
        self.ctx_verify_mode = lib.SSL_CTX_get_verify_mode
        self.ctx_verify_mode.argtypes = [ctypes.c_void_p]
        self.ctx_verify_mode.restype = ctypes.c_int
        self.ssl_ctx = lib.SSL_get_SSL_CTX
        self.ssl_ctx.argtypes = [ctypes.c_void_p]
        self.ssl_ctx.restype = ctypes.c_void_p


def _field(obj: object, index: int) -> int:
    """The `index`th pointer after an object's PyObject_HEAD."""
    return ctypes.c_void_p.from_address(id(obj) + _HEAD + index * _PTR).value or 0


def _ssl_pointer(conn: Any) -> int:
    """`SSL *` of an ssl.SSLObject (`PySSLSocket`: Socket, ssl, ctx, ...)."""
    return _field(conn._sslobj, 1)


def _check(lib: _OpenSsl) -> bool:
    """Whether the pointers read are the ones OpenSSL knows, on a throw-away server connection."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    conn = context.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_side=True)
    if _field(conn._sslobj, 2) != id(context):  # type: ignore[attr-defined]  # PySSLSocket.ctx is the context object
        return False
    ctx_ptr = _field(context, 0)  # PySSLContext.ctx
    ssl_ptr = _ssl_pointer(conn)
    if not ctx_ptr or not ssl_ptr or lib.ssl_ctx(ssl_ptr) != ctx_ptr:
        return False
    if lib.ctx_verify_mode(ctx_ptr) != 0 or lib.get_verify_mode(ssl_ptr) != 0:
        return False
    context.verify_mode = ssl.CERT_OPTIONAL
    if lib.ctx_verify_mode(ctx_ptr) != _SSL_VERIFY_PEER:
        return False
    lib.set_verify(ssl_ptr, _SSL_VERIFY_PEER, _ACCEPT)
    return bool(lib.get_verify_mode(ssl_ptr) == _SSL_VERIFY_PEER)


_lib: _OpenSsl | None = None
_checked = False


def available() -> bool:
    global _lib, _checked
    if not _checked:
        _checked = True
        try:
            if sys.implementation.name == "cpython":
                lib = _OpenSsl()
                _lib = lib if _check(lib) else None
        except (OSError, AttributeError, ValueError):
            _lib = None
        if _lib is None:
            log.warning(
                "gateway: this Python's ssl module cannot be asked for client certificates; "
                "hostnames with negotiateClientCertificate get none (their policies refuse the request)"
            )
    return _lib is not None


def request_client_certificate(conn: Any) -> bool:
    """Make this handshake (an ssl.SSLObject in its SNI callback) ask the client for a certificate,
    accepting whatever it sends; False when this Python cannot."""
    if not available():
        return False
    assert _lib is not None
    ptr = _ssl_pointer(conn)
    if not ptr:
        return False
    _lib.set_verify(ptr, _SSL_VERIFY_PEER, _ACCEPT)
    return True


def peer_certificate(transport: Any) -> bytes | None:
    """The DER certificate the client of a TLS connection presented, if any."""
    sslobj = transport.get_extra_info("ssl_object")
    if sslobj is None:
        return None
    try:
        der = sslobj.getpeercert(binary_form=True)
    except (ValueError, ssl.SSLError):
        return None
    return der if isinstance(der, bytes) and der else None


__all__ = ["available", "peer_certificate", "request_client_certificate"]
