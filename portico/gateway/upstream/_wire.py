"""Bytes and URLs of the backend client: a request's head (and whole body), and splitting a
backend URL."""

from __future__ import annotations


def request_bytes(
    method: str,
    scheme: str,
    host: str,
    port: int,
    target: str,
    headers: list[tuple[bytes, bytes]],
    body: bytes | bytearray | None,
    content_length: int | None,
    *,
    chunked: bool = False,
) -> bytes:
    """The request head, and the whole body when it is given as bytes. A body streamed after the
    head: its `content_length` if known, else `chunked`."""
    default_port = 443 if scheme == "https" else 80
    host_value = host if port == default_port else f"{host}:{port}"
    if ":" in host and not host.startswith("["):
        host_value = f"[{host}]" if port == default_port else f"[{host}]:{port}"
    parts = [f"{method} {target} HTTP/1.1\r\nHost: {host_value}\r\n".encode("latin-1")]
    for name, value in headers:
        parts.append(name + b": " + value + b"\r\n")
    if body is not None:
        if body or method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
            parts.append(b"content-length: %d\r\n" % len(body))
    elif content_length is not None:
        parts.append(b"content-length: %d\r\n" % content_length)
    elif chunked:
        parts.append(b"transfer-encoding: chunked\r\n")
    parts.append(b"\r\n")
    if body:
        parts.append(bytes(body))
    return b"".join(parts)


def split_url(url: str) -> tuple[str, str, int, str]:
    """`https://h:1/base?x` → ("https", "h", 1, "/base?x")."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"not an absolute URL: {url[:100]}")
    scheme = scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"unsupported URL scheme '{scheme}'")
    authority, slash, path = rest.partition("/")
    authority = authority.rsplit("@", 1)[-1]
    if authority.startswith("["):
        host, _, port_text = authority[1:].partition("]")
        port_text = port_text.lstrip(":")
    else:
        host, _, port_text = authority.partition(":")
    port = int(port_text) if port_text else (443 if scheme == "https" else 80)
    return scheme, host, port, slash + path
