"""Keep secrets out of logs and reports.

A key is secret when one of its words is ``token``, ``secret``, ``password``, ``key`` (or
close kin: ``passwd``, ``pwd``, ``credential``, ``apikey``...). Words are split on ``.``,
``_``, ``-`` and camelCase, so ``HF_TOKEN``, ``spark.hadoop.fs.s3a.secret.key`` and
``accessKey`` are secret while ``max_tokens_per_batch`` is not. Values of secret conf entries
and of secret environment variables are also masked wherever they appear in free text, and
so are passwords in URLs (``s3://user:pass@host``) and secret query parameters
(``?sig=...``, ``X-Amz-Signature=...``). Paths are never secrets: ``PWD`` (the current
folder) or ``spark.ssl.keyStore: /etc/ks.jks`` stay readable.

Example:
    >>> r = Redactor.from_sources({"spark": {"conf": {"fs.s3a.secret.key": "abc123"}}}, env={})
    >>> r.data({"fs.s3a.secret.key": "abc123"})
    {'fs.s3a.secret.key': '***'}
    >>> r.text("failed with abc123")
    'failed with ***'
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["MASK", "is_secret_key", "Redactor"]

MASK = "***"
_SECRET_WORDS = {
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "key",
    "apikey",
    "credential",
    "credentials",
    "auth",
    "authorization",
    "privatekey",
    "sas",
    "sig",
    "signature",
}
_SPLIT = re.compile(r"[._\-\s/:]+|(?<=[a-z0-9])(?=[A-Z])")
_URL_PASSWORD = re.compile(r"(?P<pre>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)[^@\s/]+(?=@)")
_QUERY_PARAM = re.compile(r"(?P<pre>[?&](?P<key>[^=&\s#]+)=)(?P<value>[^&\s#'\"]+)")


def _is_path(value: str) -> bool:
    """A filesystem path (absolute, home-relative or existing): shown, never masked."""
    if value.startswith(("/", "~", "./", "../", "file:")) or re.match(r"^[A-Za-z]:[\\/]", value):
        return True
    try:
        return os.path.exists(value)
    except (OSError, ValueError):
        return False


def is_secret_key(key: Any) -> bool:
    """Whether a conf or environment key names a secret (word-wise, case-insensitive)."""
    words = [w.lower() for w in _SPLIT.split(str(key)) if w]
    return any(w in _SECRET_WORDS for w in words)


class Redactor:
    """Masks secret entries in nested data and known secret values in text."""

    def __init__(self, values: set[str] | None = None) -> None:
        # Short values (e.g. "1") would mask unrelated text: only mask 4+ characters.
        self.values = sorted({v for v in (values or set()) if len(v) >= 4}, key=len, reverse=True)

    @classmethod
    def from_sources(cls, data: Any = None, env: Mapping[str, str] | None = None) -> Redactor:
        """Collect secret values from a conf (any nesting) and the environment."""
        env = os.environ if env is None else env
        values = {v for k, v in env.items() if is_secret_key(k) and v and not _is_path(v)}
        values |= set(_secret_values(data))
        return cls(values)

    def data(self, obj: Any) -> Any:
        """A copy of ``obj`` with secret keys' values replaced by ``***`` and secrets in text masked."""
        if isinstance(obj, Mapping):
            return {
                k: (
                    MASK
                    if is_secret_key(k)
                    and v not in (None, "")
                    and not isinstance(v, Mapping)
                    and not (isinstance(v, str) and _is_path(v))
                    else self.data(v)
                )
                for k, v in obj.items()
            }
        if isinstance(obj, (list, tuple)):
            return [self.data(v) for v in obj]
        if isinstance(obj, str):
            return self.text(obj)
        return obj

    def text(self, text: str) -> str:
        """``text`` with known secret values, URL passwords and secret query values masked."""
        for v in self.values:
            if v in text:
                text = text.replace(v, MASK)
        text = _URL_PASSWORD.sub(lambda m: m.group("pre") + MASK, text)
        return _QUERY_PARAM.sub(
            lambda m: m.group("pre") + MASK if is_secret_key(m.group("key")) else m.group(0), text
        )


def _secret_values(obj: Any) -> list[str]:
    out: list[str] = []
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if (
                is_secret_key(k)
                and isinstance(v, (str, int, float))
                and not isinstance(v, bool)
                and not _is_path(str(v))
            ):
                out.append(str(v))
            else:
                out.extend(_secret_values(v))
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            out.extend(_secret_values(v))
    return out
