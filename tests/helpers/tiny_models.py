"""Tiny random-weight models for every task, built offline (no hub) and cached per test run.

Each builder writes a transformers folder (config, safetensors weights, tokenizer or
processor) with seeded weights, so outputs are reproducible run to run.

Example:
    >>> from tests.helpers.tiny_models import build_all
    >>> folders = build_all(Path("/tmp/tiny"))      # {"text-classification": Path(...), ...}
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

SEED = 0
MAX_LEN = 128

# A small corpus: enough to give every test sentence real (sub)word pieces.
CORPUS = [
    "I love this movie, it is great and wonderful.",
    "This film was terrible, boring and bad.",
    "The weather in Paris is sunny today.",
    "My name is Sarah and I live in London.",
    "John works for Google in Berlin.",
    "The cat sat on the mat and the dog barked.",
    "Spark runs pandas UDFs on Arrow batches.",
    "Hugging Face transformers pipelines run on CPU.",
    "What is the capital of France? The capital of France is Paris.",
    "Translate English to German: the house is wonderful.",
    "Summarize: the quick brown fox jumps over the lazy dog.",
    "This is a positive review. This is a negative review.",
    "Politics, sports, technology, economy and science are topics.",
    "Hello world! How are you doing today?",
    "The stock market rose sharply after the announcement.",
    "Machine learning models need data, compute and tests.",
    "0 1 2 3 4 5 6 7 8 9 10 100 2024",
] * 4

BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _seed() -> None:
    torch.manual_seed(SEED)
    np.random.seed(SEED)


# ----------------------------------------------------------------------------
# Tokenizers (built locally, no download)
# ----------------------------------------------------------------------------
_CACHE: dict = {}


def wordpiece_vocab() -> dict[str, int]:
    """BERT-style uncased WordPiece vocab built from CORPUS ([PAD]=0 ... [MASK]=4).

    Built by hand (sorted), not with tokenizers' WordPieceTrainer: that trainer gave
    a different vocab (355 vs 356 entries, different ids) from run to run, which
    makes outputs of the seeded random models non-reproducible.
    """
    if "wp" not in _CACHE:
        words = sorted({w for line in CORPUS for w in re.findall(r"\w+|[^\w\s]", line.lower())})
        chars = sorted({c for w in words for c in w})
        tokens = (
            BERT_SPECIALS + chars + ["##" + c for c in chars] + [w for w in words if len(w) > 1]
        )
        _CACHE["wp"] = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    return _CACHE["wp"]


def bert_tokenizer():
    # transformers 5.x: BertTokenizer *is* the fast (tokenizers-backed) class and
    # accepts the vocab as a dict; no vocab.txt file needed.
    return transformers.BertTokenizer(vocab=wordpiece_vocab(), model_max_length=MAX_LEN)


def byte_level_bpe(
    special_tokens: list[str], vocab_size: int = 600
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """GPT-2 style byte-level BPE trained on CORPUS. Returns (vocab, merges).

    ``special_tokens`` get the first ids (the trainer puts them first).
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return model["vocab"], merges


def _tiny_bert_config(**kw):
    return transformers.BertConfig(
        vocab_size=len(wordpiece_vocab()),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=MAX_LEN,
        pad_token_id=0,
        **kw,
    )


def _save(out: Path, *objs) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for o in objs:
        o.save_pretrained(out)
    return out


# ----------------------------------------------------------------------------
# One builder per task: build + save_pretrained, return the folder
# ----------------------------------------------------------------------------
def build_text_classification(out: Path) -> Path:
    _seed()
    cfg = _tiny_bert_config(
        num_labels=2,
        id2label={0: "NEGATIVE", 1: "POSITIVE"},
        label2id={"NEGATIVE": 0, "POSITIVE": 1},
    )
    return _save(out, transformers.BertForSequenceClassification(cfg).eval(), bert_tokenizer())


def build_token_classification(out: Path) -> Path:
    _seed()
    labels = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]
    cfg = _tiny_bert_config(
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )
    return _save(out, transformers.BertForTokenClassification(cfg).eval(), bert_tokenizer())


def build_fill_mask(out: Path) -> Path:
    _seed()
    return _save(out, transformers.BertForMaskedLM(_tiny_bert_config()).eval(), bert_tokenizer())


def build_question_answering(out: Path) -> Path:
    _seed()
    return _save(
        out, transformers.BertForQuestionAnswering(_tiny_bert_config()).eval(), bert_tokenizer()
    )


def build_zero_shot_classification(out: Path) -> Path:
    # The zero-shot pipeline looks for a label starting with "entail" in config.label2id.
    _seed()
    labels = ["contradiction", "neutral", "entailment"]
    cfg = _tiny_bert_config(
        num_labels=3,
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )
    return _save(out, transformers.BertForSequenceClassification(cfg).eval(), bert_tokenizer())


def build_feature_extraction(out: Path) -> Path:
    _seed()
    return _save(out, transformers.BertModel(_tiny_bert_config()).eval(), bert_tokenizer())


def build_text_generation(out: Path) -> Path:
    _seed()
    vocab, merges = byte_level_bpe(["<|endoftext|>"])
    tok = transformers.GPT2Tokenizer(vocab=vocab, merges=merges, model_max_length=MAX_LEN)
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    cfg = transformers.GPT2Config(
        vocab_size=len(vocab),
        n_positions=MAX_LEN,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
    )
    model = transformers.GPT2LMHeadModel(cfg).eval()
    # transformers 5.x text-generation pipeline defaults to do_sample=True, temperature=0.7,
    # max_new_tokens=256 unless generation_config.json says otherwise -> pin greedy decoding.
    model.generation_config = transformers.GenerationConfig(
        bos_token_id=eos, eos_token_id=eos, pad_token_id=eos, do_sample=False, max_new_tokens=8
    )
    return _save(out, model, tok)


def build_text2text(out: Path) -> Path:
    """BART-like encoder-decoder (for summarization / translation / text2text)."""
    _seed()
    vocab, merges = byte_level_bpe(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    tok = transformers.BartTokenizer(vocab=vocab, merges=merges, model_max_length=MAX_LEN)
    cfg = transformers.BartConfig(
        vocab_size=len(vocab),
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=MAX_LEN,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        decoder_start_token_id=tok.eos_token_id,
        forced_bos_token_id=None,
        forced_eos_token_id=tok.eos_token_id,
    )
    model = transformers.BartForConditionalGeneration(cfg).eval()
    model.generation_config.max_new_tokens = 8
    return _save(out, model, tok)


def _printable_bpe(token: str) -> bool:
    """True if a byte-level BPE token maps to printable ASCII ("Ġ" is the byte-level space)."""
    return all(32 < ord(c) < 127 or c == "Ġ" for c in token)


WHISPER_SPECIALS = [  # same relative order as real Whisper; <|notimestamps|> must be the last special id
    "<|endoftext|>",
    "<|startoftranscript|>",
    "<|en|>",
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nospeech|>",
    "<|notimestamps|>",
]


def build_asr_whisper(out: Path) -> Path:
    _seed()
    vocab, merges = byte_level_bpe([], vocab_size=500)
    vocab = dict(vocab)
    for t in WHISPER_SPECIALS:  # append after the normal tokens, like real Whisper
        vocab[t] = len(vocab)
    tok = transformers.WhisperTokenizer(
        vocab=vocab,
        merges=merges,
        model_max_length=448,
        extra_special_tokens=WHISPER_SPECIALS[1:],
    )
    ids = {t: tok.convert_tokens_to_ids(t) for t in WHISPER_SPECIALS}
    fe = transformers.WhisperFeatureExtractor(
        feature_size=80
    )  # 16 kHz, 30 s windows -> 3000 frames
    cfg = transformers.WhisperConfig(
        vocab_size=len(vocab),
        num_mel_bins=80,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_source_positions=1500,  # = 3000 mel frames / 2 (conv stride); fixed by the feature extractor
        max_target_positions=64,
        pad_token_id=ids["<|endoftext|>"],
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|endoftext|>"],
        decoder_start_token_id=ids["<|startoftranscript|>"],
    )
    model = transformers.WhisperForConditionalGeneration(cfg).eval()
    # A *fresh* GenerationConfig: the one derived from the model config carries
    # `_from_model_config=True`, and in transformers 5.x such a config silently
    # drops non-standard keys (lang_to_id, task_to_id, no_timestamps_token_id,
    # is_multilingual) when it is re-loaded from generation_config.json.
    model.generation_config = transformers.GenerationConfig(
        decoder_start_token_id=ids["<|startoftranscript|>"],
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|endoftext|>"],
        pad_token_id=ids["<|endoftext|>"],
        no_timestamps_token_id=ids["<|notimestamps|>"],
        is_multilingual=True,  # so generate_kwargs={"language": "en", "task": "transcribe"} is accepted
        lang_to_id={"<|en|>": ids["<|en|>"]},
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
        max_new_tokens=8,
        num_beams=1,  # the ASR pipeline otherwise defaults to num_beams=5 (and max_new_tokens=256)
        # Byte-level tokens for non-ASCII bytes decode to "\ufffd" when emitted alone by a
        # random model; suppressing them keeps transcripts printable.
        suppress_tokens=[
            i for t, i in vocab.items() if t not in WHISPER_SPECIALS and not _printable_bpe(t)
        ],
    )
    return _save(out, model, tok, fe)


def build_asr_ctc(out: Path) -> Path:
    """wav2vec2-like CTC ASR (character vocab): the simpler ASR path."""
    _seed()
    out.mkdir(parents=True, exist_ok=True)
    chars = list("abcdefghijklmnopqrstuvwxyz'")
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4}
    for c in chars:
        vocab[c] = len(vocab)
    (out / "vocab.json").write_text(json.dumps(vocab))
    tok = transformers.Wav2Vec2CTCTokenizer(str(out / "vocab.json"), word_delimiter_token="|")
    fe = transformers.Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=16000,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=True,
    )
    cfg = transformers.Wav2Vec2Config(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(32, 32, 32),
        conv_stride=(5, 4, 4),
        conv_kernel=(10, 4, 4),  # 80x downsampling
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        pad_token_id=0,
        ctc_loss_reduction="mean",
        do_stable_layer_norm=False,
        feat_extract_norm="group",
    )
    return _save(out, transformers.Wav2Vec2ForCTC(cfg).eval(), tok, fe)


def build_image_classification(out: Path) -> Path:
    _seed()
    labels = ["cat", "dog", "car"]
    cfg = transformers.ViTConfig(
        image_size=32,
        patch_size=8,
        num_channels=3,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=3,
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )
    # transformers 5.x: ViTImageProcessor is the torchvision backend; without
    # torchvision use the PIL backend class explicitly (Pillow is required).
    proc = transformers.ViTImageProcessorPil(size={"height": 32, "width": 32})
    return _save(out, transformers.ViTForImageClassification(cfg).eval(), proc)


def build_audio_classification(out: Path) -> Path:
    """wav2vec2-like audio classifier (3 labels)."""
    _seed()
    labels = ["speech", "music", "noise"]
    fe = transformers.Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=16000,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=True,
    )
    cfg = transformers.Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(32, 32, 32),
        conv_stride=(5, 4, 4),
        conv_kernel=(10, 4, 4),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        classifier_proj_size=16,
        num_labels=3,
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
        do_stable_layer_norm=False,
        feat_extract_norm="group",
    )
    return _save(out, transformers.Wav2Vec2ForSequenceClassification(cfg).eval(), fe)


BUILDERS = {
    "text-classification": build_text_classification,
    "token-classification": build_token_classification,
    "fill-mask": build_fill_mask,
    "question-answering": build_question_answering,
    "zero-shot-classification": build_zero_shot_classification,
    "feature-extraction": build_feature_extraction,
    "text-generation": build_text_generation,
    "text2text-generation": build_text2text,
    "asr-whisper": build_asr_whisper,
    "asr-ctc": build_asr_ctc,
    "image-classification": build_image_classification,
    "audio-classification": build_audio_classification,
}


def build_all(out: Path) -> dict[str, Path]:
    """Build every tiny model under ``out`` (skips folders already complete)."""
    folders = {}
    for name, build in BUILDERS.items():
        folder = out / name
        if not (folder / "config.json").exists():
            build(folder)
        folders[name] = folder
    return folders
