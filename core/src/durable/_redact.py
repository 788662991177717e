"""Store URLs and driver messages with their secrets hidden (``redact_url``, ``redact_text``), for
reprs, messages, logs and pages."""

from __future__ import annotations

from urllib.parse import unquote, unquote_plus

__all__ = ["redact_text", "redact_url"]

_SECRET_WORDS = ("pass", "pwd", "secret", "token", "credential", "auth")


def _secret_option(name: str) -> bool:
    """Whether a URL query option of this name holds a secret: ``password``, ``sslpassword``,
    ``ssl_password``, ``token``, ``secret``, ``api_key``, ``auth``, ... (any name containing pass,
    pwd, secret, token, credential or auth, or ending in key)."""
    name = unquote_plus(name).lower()
    return name.endswith("key") or any(word in name for word in _SECRET_WORDS)


def _looks_like_host(authority: str) -> bool:
    """Whether ``authority`` (no ``@`` in it) reads as ``host[:port]``, not as the start of a user
    info whose password holds an unescaped ``/``, ``?`` or ``#``."""
    if authority.endswith("]") or ":" not in authority:
        return True
    host, _, port = authority.rpartition(":")
    return bool(host) and port.isdigit()


def _secret_spans(url: str) -> list[tuple[int, int]]:
    """Where ``url`` holds secrets: its user info's password and the values of secret query options
    (``_secret_option``), as ``(start, end)`` offsets, in order."""
    scheme, sep, _ = url.partition("://")
    start = len(scheme) + len(sep) if sep else 0
    spans: list[tuple[int, int]] = []
    query_at = url.find("?", start)
    if sep:
        # The user info ends at the last "@" of the authority (before the path, query or fragment).
        ends = [i for i in (url.find(c, start) for c in "/?#") if i >= 0]
        end = min(ends, default=len(url))
        at = url.rfind("@", start, end)
        if at >= 0:
            colon = url.find(":", start, at)
            if colon >= 0:
                spans.append((colon + 1, at))
        elif "@" in url[end:] and not _looks_like_host(url[start:end]):
            # A password holding an unescaped "/", "?" or "#": what drivers would take for one ends
            # at an "@" further on. Hide everything up to it rather than guess.
            before_query = url.rfind("@", end, query_at if query_at > end else len(url))
            at = before_query if before_query >= 0 else url.find("@", end)
            spans.append((start, at))
            query_at = url.find("?", at)
    if query_at >= 0:
        fragment = url.find("#", query_at)
        offset = query_at + 1
        for item in url[offset : fragment if fragment >= 0 else len(url)].split("&"):
            name, equals, value = item.partition("=")
            if equals and value and _secret_option(name):
                spans.append((offset + len(name) + 1, offset + len(item)))
            offset += len(item) + 1
    return spans


def redact_url(url: str) -> str:
    """``url`` with every secret replaced by ``***``, for reprs, messages, logs and pages: the
    password of its user info (``redis://user:***@host``) and the values of query options that
    name a secret (``?password=***``, ``sslpassword``, ``token``, ``secret``, ``api_key``, ...).
    User info it cannot tell from a host (a password holding an unescaped ``/``, ``?`` or ``#``)
    is hidden whole. Never raises; anything else is shown as given."""
    spans = _secret_spans(url)
    if not spans:
        return url
    pieces, last = [], 0
    for begin, end in spans:
        pieces += [url[last:begin], "***"]
        last = end
    return "".join([*pieces, url[last:]])


def redact_text(text: str, url: str) -> str:
    """``text`` (a driver's error message, say) with ``url`` and each of its secrets, as written or
    percent-decoded, replaced: by ``redact_url(url)``, and by ``***``. Secrets shorter than four
    characters are left, as they would match ordinary words."""
    if url in text:
        text = text.replace(url, redact_url(url))
    for begin, end in _secret_spans(url):
        secret = url[begin:end]
        for spelling in dict.fromkeys((secret, unquote(secret), unquote_plus(secret))):
            if len(spelling) >= 4:
                text = text.replace(spelling, "***")
    return text
