"""The real Whisper tiny.en for the speech benchmark: one shared implementation.

The CTranslate2 -> Hugging Face conversion and the espeak-ng speech helpers live in
``tests/real_whisper.py`` (the real-model tests use them too); the benchmark reuses them.

Example:
    >>> from bench.whisper import whisper_tiny_en
    >>> folder = whisper_tiny_en(Path("/tmp/whisper-tiny-en"))
"""

from tests.helpers.real_whisper import (
    SENTENCES,
    espeak_available,
    normalize,
    speak,
    whisper_tiny_en,
)

__all__ = ["SENTENCES", "espeak_available", "normalize", "speak", "whisper_tiny_en"]
