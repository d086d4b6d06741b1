"""Tiny random vision models built offline (no hub): CLIP, SigLIP, DETR (ResNet backbone, no timm),
ViT, and a ViT + GPT-2 captioner. Seeded: outputs are reproducible run to run.

Example:
    >>> folders = build_vision(Path("/tmp/tiny-vision"))   # {"clip": Path(...), "detr": ...}
"""

from __future__ import annotations

from pathlib import Path

import torch
import transformers

from tests.helpers.tiny_models import MAX_LEN, _save, _seed, bert_tokenizer, byte_level_bpe

__all__ = ["VISION_BUILDERS", "build_vision"]

_TOWER = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
}


def build_clip(out: Path) -> Path:
    """CLIP with a WordPiece tokenizer ([SEP] is the eos token the text tower pools at)."""
    _seed()
    tok = bert_tokenizer()
    cfg = transformers.CLIPConfig(
        text_config={
            **_TOWER,
            "vocab_size": len(tok),
            "max_position_embeddings": MAX_LEN,
            "bos_token_id": tok.cls_token_id,
            "eos_token_id": tok.sep_token_id,
            "pad_token_id": tok.pad_token_id,
        },
        vision_config={**_TOWER, "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    proc = transformers.CLIPImageProcessorPil(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    return _save(out, transformers.CLIPModel(cfg).eval(), tok, proc)


def build_siglip(out: Path) -> Path:
    """SigLIP (sigmoid scores, text pooled at the last of 64 padded tokens)."""
    _seed()
    tok = transformers.BertTokenizer(vocab=bert_tokenizer().get_vocab(), model_max_length=64)
    cfg = transformers.SiglipConfig(
        text_config={
            **_TOWER,
            "vocab_size": len(tok),
            "max_position_embeddings": 64,
            "bos_token_id": tok.cls_token_id,
            "eos_token_id": tok.sep_token_id,
            "pad_token_id": tok.pad_token_id,
        },
        vision_config={**_TOWER, "image_size": 32, "patch_size": 8},
    )
    proc = transformers.SiglipImageProcessorPil(size={"height": 32, "width": 32})
    return _save(out, transformers.SiglipModel(cfg).eval(), tok, proc)


def build_vit(out: Path) -> Path:
    """A ViT encoder with its pooler (image-feature-extraction)."""
    _seed()
    cfg = transformers.ViTConfig(**_TOWER, image_size=32, patch_size=8)
    proc = transformers.ViTImageProcessorPil(size={"height": 32, "width": 32})
    return _save(out, transformers.ViTModel(cfg).eval(), proc)


def build_detr(out: Path) -> Path:
    """DETR with a small ResNet backbone from transformers (no timm), 3 labels, 12 queries."""
    _seed()
    labels = ["cat", "dog", "car"]
    backbone = transformers.ResNetConfig(
        embedding_size=8,
        hidden_sizes=[8, 16, 16, 32],
        depths=[1, 1, 1, 1],
        layer_type="basic",
        out_features=["stage4"],
    )
    cfg = transformers.DetrConfig(
        use_timm_backbone=False,
        use_pretrained_backbone=False,
        backbone_config=backbone,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        num_queries=12,
        num_labels=3,
        id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)},
    )
    model = transformers.DetrForObjectDetection(cfg).eval()
    with torch.no_grad():  # spread the random queries and heads: distinct boxes and scores
        model.model.query_position_embeddings.weight.normal_(std=1.0)
        for layer in (model.class_labels_classifier, *model.bbox_predictor.layers):
            layer.weight.normal_(std=0.3)
    proc = transformers.DetrImageProcessorPil(size={"shortest_edge": 64, "longest_edge": 96})
    return _save(out, model, proc)


def build_captioner(out: Path) -> Path:
    """A VisionEncoderDecoder captioner: ViT encoder + GPT-2 decoder with cross-attention."""
    _seed()
    vocab, merges = byte_level_bpe(["<|endoftext|>"])
    tok = transformers.GPT2Tokenizer(vocab=vocab, merges=merges, model_max_length=MAX_LEN)
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    tok.pad_token = "<|endoftext|>"
    enc = transformers.ViTConfig(**_TOWER, image_size=32, patch_size=8)
    dec = transformers.GPT2Config(
        vocab_size=len(vocab),
        n_positions=MAX_LEN,
        n_embd=32,
        n_layer=2,
        n_head=2,
        add_cross_attention=True,
        tie_word_embeddings=False,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
    )
    cfg = transformers.VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
    cfg.decoder_start_token_id, cfg.pad_token_id, cfg.eos_token_id = eos, eos, eos
    model = transformers.VisionEncoderDecoderModel(cfg).eval()
    model.generation_config = transformers.GenerationConfig(
        decoder_start_token_id=eos,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
        do_sample=False,
        max_new_tokens=8,
    )
    proc = transformers.ViTImageProcessorPil(size={"height": 32, "width": 32})
    return _save(out, model, tok, proc)


VISION_BUILDERS = {
    "clip": build_clip,
    "siglip": build_siglip,
    "vit": build_vit,
    "detr": build_detr,
    "captioner": build_captioner,
}


def build_vision(out: Path) -> dict[str, Path]:
    """Build every tiny vision model under ``out`` (skips folders already complete)."""
    folders = {}
    for name, build in VISION_BUILDERS.items():
        folder = out / name
        if not (folder / "config.json").exists():
            build(folder)
        folders[name] = folder
    return folders


def build_blip(out: Path) -> Path:
    """A BLIP captioner (BlipForConditionalGeneration) with a WordPiece tokenizer."""
    _seed()
    tok = bert_tokenizer()
    cfg = transformers.BlipConfig(
        text_config={
            **_TOWER,
            "vocab_size": len(tok),
            "max_position_embeddings": MAX_LEN,
            "bos_token_id": tok.cls_token_id,
            "sep_token_id": tok.sep_token_id,
            "eos_token_id": tok.sep_token_id,
            "pad_token_id": tok.pad_token_id,
            "tie_word_embeddings": False,
        },
        vision_config={**_TOWER, "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    model = transformers.BlipForConditionalGeneration(cfg).eval()
    model.generation_config = transformers.GenerationConfig(do_sample=False, max_new_tokens=8)
    proc = transformers.BlipImageProcessorPil(size={"height": 32, "width": 32})
    return _save(out, model, tok, proc)


VISION_BUILDERS["blip"] = build_blip
