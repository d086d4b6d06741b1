"""Keep secrets out of logs and reports.

A key is secret when one of its words is ``token``, ``secret``, ``password``, ``key`` (or
close kin: ``passwd``, ``credential``, ``apikey``...). Words are split on ``.``, ``_``,
``-`` and camelCase, so ``HF_TOKEN``, ``spark.hadoop.fs.s3a.secret.key`` and ``accessKey``
are secret while ``max_tokens_per_batch`` is not. Values of secret conf entries and of
secret environment variables are also masked wherever they appear in free text.

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
    "token", "secret", "password", "passwd", "pwd", "key", "apikey", "credential",
    "credentials", "auth", "authorization", "privatekey", "sas",
}
_SPLIT = re.compile(r"[._\-\s/:]+|(?<=[a-z0-9])(?=[A-Z])")


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
        values = {v for k, v in env.items() if is_secret_key(k) and v}
        values |= set(_secret_values(data))
        return cls(values)

    def data(self, obj: Any) -> Any:
        """A copy of ``obj`` with secret keys' values replaced by ``***`` and secrets in text masked."""
        if isinstance(obj, Mapping):
            return {
                k: (MASK if is_secret_key(k) and v not in (None, "") and not isinstance(v, Mapping)
                    else self.data(v))
                for k, v in obj.items()
            }
        if isinstance(obj, (list, tuple)):
            return [self.data(v) for v in obj]
        if isinstance(obj, str):
            return self.text(obj)
        return obj

    def text(self, text: str) -> str:
        """``text`` with every known secret value replaced by ``***``."""
        for v in self.values:
            if v in text:
                text = text.replace(v, MASK)
        return text


def _secret_values(obj: Any) -> list[str]:
    out: list[str] = []
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if is_secret_key(k) and isinstance(v, (str, int, float)) and not isinstance(v, bool):
                out.append(str(v))
            else:
                out.extend(_secret_values(v))
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            out.extend(_secret_values(v))
    return out
