"""Media file builders for the bad-input and property tests (no tests here).

Example:
    >>> len(wav(np.zeros(16000), 16000)) > 32000
    True
    >>> png_header(100_000, 100_000)[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
"""

from __future__ import annotations

import io
import struct
import wave
import zlib

import numpy as np

__all__ = ["IMAGE_KINDS", "INVALID_UTF8", "wav", "flac", "image", "png_header", "tone"]

#: bytes that are not UTF-8 (a lone continuation byte, an overlong form, 0xFF/0xFE).
INVALID_UTF8 = b"\xff\xfe\xc3\x28\xa0\xa1\xe2\x28\xa1\xf0\x28\x8c\xbc\xc0\xaf"

#: (Pillow mode, file format) pairs that Pillow writes.
IMAGE_KINDS = [
    ("RGB", "PNG"),
    ("RGBA", "PNG"),
    ("L", "PNG"),
    ("LA", "PNG"),
    ("P", "PNG"),
    ("1", "PNG"),
    ("I;16", "PNG"),
    ("I", "TIFF"),
    ("F", "TIFF"),
    ("CMYK", "TIFF"),
    ("CMYK", "JPEG"),
    ("RGB", "GIF"),
    ("RGB", "BMP"),
    ("RGBA", "WEBP"),
]


def tone(seconds: float, rate: int = 16000, freq: float = 440.0, amp: float = 0.1) -> np.ndarray:
    """A sine tone (float32)."""
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def wav(samples: np.ndarray, rate: int, channels: int = 1) -> bytes:
    """16-bit PCM WAV bytes of ``samples`` (NaN as 0, clipped to [-1, 1]; same on every channel)."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        pcm = (np.clip(np.nan_to_num(np.asarray(samples, np.float64)), -1, 1) * 32767).astype("<i2")
        w.writeframes(np.repeat(pcm, channels).tobytes())
    return buf.getvalue()


def flac(samples: np.ndarray, rate: int) -> bytes:
    """FLAC bytes of ``samples`` (written with soundfile)."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.asarray(samples, np.float32), rate, format="FLAC")
    return buf.getvalue()


def image(mode: str, fmt: str, w: int, h: int, seed: int = 0) -> bytes:
    """Image file bytes of random pixels in a Pillow mode and file format."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), "RGB")
    img = img.convert(mode) if mode != "RGB" else img
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels with almost no pixel data.

    A 100,000 x 100,000 one is a decompression bomb: 30 GB of RGB once decoded.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )
