"""The image tasks beyond classification on tiny random models (CLIP, SigLIP, ViT, DETR, a ViT +
GPT-2 captioner): parity with transformers (pipelines where they exist, else the model's own
forward/generate), batch-order independence, image input forms, and one Spark run of each.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hfspark.errors import ConfigError, ModelValidationError, RowError
from hfspark.tasks import get_task
from hfspark.tasks.feature_extraction import FeatureExtraction
from hfspark.tasks.image_feature_extraction import ImageFeatureExtraction
from tests.helpers.adapter_runner import load, run_adapter

TEXTS = ["a photo of a cat", "a dog", "the weather in paris is sunny today", "car"]


@pytest.fixture(scope="module")
def vision(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import torch

    from tests.helpers.tiny_vision import build_vision

    torch.set_num_threads(1)
    return build_vision(tmp_path_factory.mktemp("tiny-vision"))


def _image(size: tuple[int, int], fmt: str = "PNG", mode: str = "RGB", seed: int = 0) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buf, format=fmt)
    return buf.getvalue()


def _pil(data: bytes) -> Any:
    from PIL import Image

    return Image.open(io.BytesIO(data))


IMAGES = [
    _image((40, 30)),
    _image((64, 64), "JPEG", seed=1),
    _image((20, 50), "WEBP", seed=2),
    _image((33, 33), "PNG", mode="L", seed=3),
    _image((30, 20), "PNG", mode="RGBA", seed=4),
    _image((25, 25), "GIF", mode="P", seed=5),
    _image((36, 28), "TIFF", seed=6),
]


def _shuffled_runs(adapter: Any, loaded: Any, items: list) -> list[list]:
    """Outputs for the items one by one, and shuffled in bigger batches (in input order)."""
    runs = [run_adapter(adapter, loaded, items, batch_size=1)]
    for seed, batch_size in [(1, 3), (2, 8)]:
        order = list(range(len(items)))
        random.Random(seed).shuffle(order)
        out = run_adapter(adapter, loaded, [items[i] for i in order], batch_size=batch_size)
        runs.append([out[order.index(i)] for i in range(len(items))])
    return runs


def _close(a: Any, b: Any, tol: float = 1e-5) -> None:
    np.testing.assert_allclose(
        np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), rtol=tol, atol=tol
    )


# -------------------------------------------------------------- image-feature-extraction
def test_image_features_match_pipeline(vision: dict[str, Path]) -> None:
    import transformers

    assert get_task("image-embeddings") is ImageFeatureExtraction
    pipe = transformers.pipeline("image-feature-extraction", model=str(vision["vit"]))
    raw = run_adapter(ImageFeatureExtraction({"normalize": False}), vision["vit"], IMAGES)
    for data, vec in zip(IMAGES, raw, strict=True):
        _close(vec, pipe(_pil(data), pool=True)[0])
    unit = run_adapter(ImageFeatureExtraction({}), vision["vit"], IMAGES[:2])
    assert [np.linalg.norm(v) for v in unit] == pytest.approx([1.0, 1.0], abs=1e-5)
    cls = run_adapter(
        ImageFeatureExtraction({"pooling": "cls", "normalize": False}), vision["vit"], IMAGES[:1]
    )
    hidden = pipe(_pil(IMAGES[0]))[0]  # the token matrix: CLS first
    _close(cls[0], hidden[0])
    mean = run_adapter(
        ImageFeatureExtraction({"pooling": "mean", "normalize": False}), vision["vit"], IMAGES[:1]
    )
    _close(mean[0], np.mean(hidden, axis=0))


@pytest.mark.parametrize("key", ["clip", "siglip"])
def test_text_and_image_vectors_share_the_space(vision: dict[str, Path], key: str) -> None:
    """feature-extraction (text) . image-feature-extraction (image), scaled, == the model's logits."""
    import torch
    import transformers

    folder = vision[key]
    texts = run_adapter(FeatureExtraction({}), folder, TEXTS, batch_size=3)
    images = run_adapter(ImageFeatureExtraction({}), folder, IMAGES, batch_size=3)
    model = transformers.AutoModel.from_pretrained(str(folder)).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    proc = transformers.AutoImageProcessor.from_pretrained(str(folder))
    padding = {"padding": "max_length", "max_length": 64} if key == "siglip" else {"padding": True}
    with torch.inference_mode():
        out = model(
            **tok(TEXTS, return_tensors="pt", **padding),
            pixel_values=proc(
                images=[_pil(d).convert("RGB") for d in IMAGES], return_tensors="pt"
            ).pixel_values,
        )
    logits = np.asarray(images) @ np.asarray(texts).T * float(model.logit_scale.exp().detach())
    if key == "siglip":
        logits += float(model.logit_bias.detach())
    _close(logits, out.logits_per_image.numpy(), tol=1e-4)
    with pytest.raises(ConfigError, match="leave pooling unset"):
        load(FeatureExtraction({"pooling": "mean"}), folder)
    with pytest.raises(ConfigError, match="leave pooling at 'auto'"):
        load(ImageFeatureExtraction({"pooling": "cls"}), folder)


def test_image_features_batch_order_independent(vision: dict[str, Path]) -> None:
    for key in ("vit", "clip"):
        adapter = ImageFeatureExtraction({})
        loaded = load(adapter, vision[key])
        first, *others = _shuffled_runs(adapter, loaded, [*IMAGES, b"broken"])
        assert isinstance(first[-1], RowError)
        for other in others:
            for a, b in zip(first[:-1], other[:-1], strict=True):
                _close(a, b)


def test_image_input_forms(vision: dict[str, Path], tmp_path: Path) -> None:
    """Bytes, a local path, file://, an fsspec URL and a binaryFile struct give the same vector."""
    import fsspec

    data = IMAGES[1]
    (tmp_path / "img.jpg").write_bytes(data)
    with fsspec.open("memory://hfspark-test/img.jpg", "wb") as f:
        f.write(data)
    forms = [
        data,
        str(tmp_path / "img.jpg"),
        f"file://{tmp_path / 'img.jpg'}",
        "memory://hfspark-test/img.jpg",
        {"path": "ignored", "modificationTime": None, "length": len(data), "content": data},
        {"path": str(tmp_path / "img.jpg"), "content": None},
    ]
    out = run_adapter(ImageFeatureExtraction({}), vision["vit"], forms)
    for vec in out[1:]:
        _close(vec, out[0])
    adapter = ImageFeatureExtraction({"max_file_bytes": 100})
    for value, message in [
        (str(tmp_path / "nope.png"), "no image file at"),
        (str(tmp_path / "img.jpg"), "max_file_bytes"),
        ({"path": None, "content": None}, "neither 'content'"),
        ("", "path is empty"),
        (3.5, "got float"),
    ]:
        with pytest.raises(RowError, match=message):
            adapter.convert(value)
    text_model = _text_model(tmp_path, vision["vit"])
    with pytest.raises(ModelValidationError, match="takes no images.*needs a vision model"):
        load(ImageFeatureExtraction({}), text_model)


def _text_model(tmp_path: Path, image_model: Path) -> Path:
    """A BERT folder with an image processor beside it (a text model is not a vision model)."""
    from tests.helpers.tiny_models import build_feature_extraction

    folder = build_feature_extraction(tmp_path / "bert")
    (folder / "preprocessor_config.json").write_bytes(
        (image_model / "preprocessor_config.json").read_bytes()
    )
    return folder


# ------------------------------------------------------------ zero-shot-image-classification
LABELS = ["cat", "dog", "car", "a plane in the sky"]


@pytest.mark.parametrize("key", ["clip", "siglip"])
def test_zero_shot_image_matches_pipeline(vision: dict[str, Path], key: str) -> None:
    import transformers

    from hfspark.tasks.zero_shot_image import ZeroShotImageClassification

    pipe = transformers.pipeline("zero-shot-image-classification", model=str(vision[key]))
    rows = [
        {"image": data, "candidate_labels": LABELS[: 2 + i % 3]} for i, data in enumerate(IMAGES)
    ]
    out = run_adapter(ZeroShotImageClassification({}), vision[key], rows, batch_size=3)
    for row, got in zip(rows, out, strict=True):
        expected = pipe(_pil(row["image"]), candidate_labels=row["candidate_labels"])
        assert got["labels"] == [e["label"] for e in expected]
        _close(got["scores"], [e["score"] for e in expected])
    assert (sum(out[0]["scores"]) == pytest.approx(1.0)) == (key == "clip")  # softmax vs sigmoid


def test_zero_shot_image_labels_and_order(vision: dict[str, Path]) -> None:
    from hfspark.tasks.zero_shot_image import ZeroShotImageClassification

    adapter = ZeroShotImageClassification(
        {"candidate_labels": "cat, dog, car", "label_cache_size": 2}
    )
    assert (
        adapter.output_type().simpleString() == "struct<labels:array<string>,scores:array<double>>"
    )
    loaded = load(adapter, vision["clip"])
    items = [
        *IMAGES,
        {"image": IMAGES[0], "candidate_labels": ["car", "plane"]},
        {"image": IMAGES[1], "candidate_labels": None},
        b"broken",
    ]
    first, *others = _shuffled_runs(adapter, loaded, items)
    assert first[-2]["labels"] == run_adapter(adapter, loaded, [IMAGES[1]])[0]["labels"]
    assert sorted(first[-3]["labels"]) == ["car", "plane"] and isinstance(first[-1], RowError)
    for other in others:
        for a, b in zip(first[:-1], other[:-1], strict=True):
            assert a["labels"] == b["labels"]
            _close(a["scores"], b["scores"])
    no_labels = ZeroShotImageClassification({})
    for value, message in [
        (IMAGES[0], "no candidate labels"),
        ({"image": IMAGES[0], "candidate_labels": ["a", None]}, "must be strings"),
        ({"image": IMAGES[0], "candidate_labels": "cat"}, "array of strings"),
        ({"image": b"", "candidate_labels": ["cat"]}, "empty"),
    ]:
        with pytest.raises(RowError, match=message):
            no_labels.convert(value)
    with pytest.raises(ConfigError, match="hypothesis_template"):
        ZeroShotImageClassification({"hypothesis_template": "no slot"})
    with pytest.raises(ModelValidationError, match="should be one of .*CLIPConfig"):
        load(ZeroShotImageClassification({}), vision["captioner"])


# ------------------------------------------------------------------------ object-detection
def _same_detections(a: list[dict], b: list[dict]) -> None:
    assert [d["label"] for d in a] == [d["label"] for d in b]
    _close([d["score"] for d in a], [d["score"] for d in b])
    for x, y in zip(a, b, strict=True):  # int boxes: a float hair can move a pixel
        assert all(abs(x["box"][k] - y["box"][k]) <= 1 for k in x["box"]), (x, y)


def test_object_detection_matches_pipeline(vision: dict[str, Path]) -> None:
    import transformers

    from hfspark.tasks.object_detection import ObjectDetection

    adapter = ObjectDetection({"threshold": 0.3})
    assert adapter.output_type().simpleString() == (
        "array<struct<label:string,score:double,box:struct<xmin:int,ymin:int,xmax:int,ymax:int>>>"
    )
    pipe = transformers.pipeline("object-detection", model=str(vision["detr"]))
    images = [*IMAGES, _image((40, 30), seed=9)]  # two 40x30 images: one batch
    out = run_adapter(adapter, vision["detr"], images, batch_size=4)
    for data, got in zip(images, out, strict=True):
        _same_detections(got, pipe(_pil(data), threshold=0.3))
    assert any(out) and all(isinstance(d["box"]["xmin"], int) for row in out for d in row)
    assert run_adapter(ObjectDetection({"threshold": 1.0}), vision["detr"], images[:2]) == [[], []]
    with pytest.raises(ConfigError, match="threshold"):
        ObjectDetection({"threshold": 2})


def test_object_detection_batch_order_independent(vision: dict[str, Path]) -> None:
    from hfspark.tasks.object_detection import ObjectDetection

    adapter = ObjectDetection({"threshold": 0.0})
    loaded = load(adapter, vision["detr"])
    items = [*IMAGES, _image((40, 30), seed=9), _image((64, 64), seed=8), b"GIF89a"]
    first, *others = _shuffled_runs(adapter, loaded, items)
    assert isinstance(first[-1], RowError) and all(len(r) == 12 for r in first[:-1])
    for other in others:
        for a, b in zip(first[:-1], other[:-1], strict=True):
            _same_detections(a, b)


# ---------------------------------------------------------------------------- image-to-text
def _generate(folder: Path, data: bytes, prompt: str | None = None, max_new_tokens: int = 8) -> str:
    """A caption straight from ``model.generate`` (transformers 5 has no image-to-text pipeline)."""
    import torch
    import transformers

    model = transformers.AutoModelForImageTextToText.from_pretrained(str(folder)).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    pixels = transformers.AutoImageProcessor.from_pretrained(str(folder))(
        images=_pil(data).convert("RGB"), return_tensors="pt"
    ).pixel_values
    kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens}
    skip = 1  # the decoder's start token
    if prompt is not None and model.config.model_type == "blip":
        kwargs["input_ids"] = tok(prompt, return_tensors="pt").input_ids
        skip = kwargs["input_ids"].shape[1] - 1  # BLIP drops the prompt's final [SEP]
    elif prompt is not None:
        start = model.generation_config.decoder_start_token_id
        ids = [start, *tok(prompt, add_special_tokens=False).input_ids]
        kwargs["decoder_input_ids"] = torch.tensor([ids])
        skip = len(ids)
    with torch.inference_mode():
        out = model.generate(pixel_values=pixels, **kwargs)
    return tok.decode(out[0, skip:], skip_special_tokens=True)


@pytest.mark.parametrize("key", ["captioner", "blip"])
def test_image_to_text_matches_generate(vision: dict[str, Path], key: str) -> None:
    from hfspark.tasks.image_to_text import ImageToText

    assert get_task("image-captioning") is ImageToText
    rows = [
        IMAGES[0],
        {"image": IMAGES[1], "prompt": "the cat"},
        {"image": IMAGES[2], "prompt": None},
        IMAGES[3],
    ]
    out = run_adapter(ImageToText({"max_new_tokens": 6}), vision[key], rows, batch_size=4)
    for row, got in zip(rows, out, strict=True):
        data, prompt = (row["image"], row["prompt"]) if isinstance(row, dict) else (row, None)
        assert got["generated_text"] == _generate(vision[key], data, prompt, 6)
        assert got["finish_reason"] in ("stop", "length") and got["completion_tokens"] <= 6
    assert out[1]["prompt_tokens"] > 0 == out[0]["prompt_tokens"]


def test_image_to_text_batches_sampling_and_errors(vision: dict[str, Path]) -> None:
    from hfspark.tasks.image_to_text import ImageToText

    adapter = ImageToText({"prompt": "the", "do_sample": True, "seed": 3, "max_new_tokens": 5})
    assert adapter.output_type().simpleString() == (
        "struct<generated_text:string,finish_reason:string,prompt_tokens:int,completion_tokens:int>"
    )
    loaded = load(adapter, vision["captioner"])
    items = [*IMAGES[:4], {"image": IMAGES[4], "prompt": "a dog"}, b"\x89PNG broken"]
    first, *others = _shuffled_runs(adapter, loaded, items)
    assert isinstance(first[-1], RowError)
    assert all(other[:-1] == first[:-1] for other in others)  # seeded per row: same samples
    with pytest.raises(RowError, match="'prompt' must be a string"):
        adapter.convert({"image": IMAGES[0], "prompt": 5})
    long_prompt = run_adapter(
        ImageToText({"prompt": "the cat sat on the mat " * 40}), loaded, [IMAGES[0]]
    )
    assert isinstance(long_prompt[0], RowError) and "at most" in str(long_prompt[0])
    from hfspark.flavor import read_info

    with pytest.raises(ModelValidationError, match="architecture ends with"):  # on the driver
        read_info(str(vision["detr"]), task="image-to-text")


# --------------------------------------------------------------------------------- on Spark
def test_image_tasks_on_spark(spark: Any, vision: dict[str, Path], tmp_path: Path) -> None:
    """A binaryFile folder through every image task: bytes, paths and the binaryFile struct."""
    from pyspark.sql import functions as F

    from hfspark.flavor import save_model
    from hfspark.tasks.object_detection import ObjectDetection
    from hfspark.tasks.zero_shot_image import ZeroShotImageClassification
    from hfspark.udfs import model_udf

    folder = tmp_path / "images with space"
    folder.mkdir()
    names = [
        f"img{i}.{fmt}" for i, fmt in enumerate(("png", "jpg", "webp", "png", "png", "gif", "tiff"))
    ]
    for name, data in zip(names, IMAGES, strict=True):
        (folder / name).write_bytes(data)
    (folder / "zz-broken.png").write_bytes(IMAGES[0][:100])
    saved = {}
    for key, task in [
        ("clip", "zero-shot-image-classification"),
        ("detr", "object-detection"),
        ("captioner", "image-to-text"),
    ]:
        save_model(str(vision[key]), tmp_path / f"saved-{key}", task=task)
        saved[key] = str(tmp_path / f"saved-{key}")
    df = spark.read.format("binaryFile").load(str(folder)).coalesce(1)  # one worker: few loads
    df = df.withColumn(
        "labels", F.when(F.col("path").contains("img1"), F.array(F.lit("plane"), F.lit("car")))
    )
    embed = model_udf(saved["clip"], task="image-feature-extraction", errors="column", device="cpu")
    embed_text = model_udf(saved["clip"], task="feature-extraction", device="cpu")
    tag = model_udf(
        saved["clip"],
        errors="column",
        device="cpu",
        params={"candidate_labels": ["cat", "dog", "car"]},
    )
    detect = model_udf(saved["detr"], errors="column", device="cpu", params={"threshold": 0.3})
    caption = model_udf(
        saved["captioner"], errors="column", device="cpu", params={"max_new_tokens": 4}
    )
    assert tag.returnType.simpleString() == (
        "struct<labels:array<string>,scores:array<double>,error:string>"
    )
    assert embed.returnType.simpleString() == "struct<embedding:array<float>,error:string>"
    embed.check_input(df, "content")
    clip_cols = df.select(
        "path",
        embed("content").alias("by_bytes"),
        embed("path").alias("by_path"),
        embed(F.struct("path", "content")).alias("by_struct"),
        tag("content", "labels").alias("tag"),
    ).collect()
    other_cols = df.select(
        "path", detect("content").alias("det"), caption("content").alias("cap")
    ).collect()
    by_path = {r.path: r.asDict() for r in other_cols}
    out = sorted(({**r.asDict(), **by_path[r.path]} for r in clip_cols), key=lambda r: r["path"])
    assert [Path(r["path"]).name for r in out] == [*names, "zz-broken.png"]
    good, broken = out[:-1], out[-1]
    for col in ("by_bytes", "by_path", "by_struct", "tag", "det", "cap"):
        assert broken[col].error and "corrupt or truncated" in broken[col].error, col
        assert all(r[col].error is None for r in good), col
    vectors = run_adapter(ImageFeatureExtraction({}), vision["clip"], IMAGES)
    for r, vec in zip(good, vectors, strict=True):
        _close(r["by_bytes"].embedding, vec)
        _close(r["by_path"].embedding, vec)
        _close(r["by_struct"].embedding, vec)
    tags = run_adapter(
        ZeroShotImageClassification({"candidate_labels": ["cat", "dog", "car"]}),
        vision["clip"],
        [
            {"image": d, "candidate_labels": ["plane", "car"] if i == 1 else None}
            for i, d in enumerate(IMAGES)
        ],
    )
    for r, t in zip(good, tags, strict=True):
        assert r["tag"].labels == t["labels"]
        _close(r["tag"].scores, t["scores"])
    dets = run_adapter(ObjectDetection({"threshold": 0.3}), vision["detr"], IMAGES)
    for r, d in zip(good, dets, strict=True):
        _same_detections([x.asDict(recursive=True) for x in r["det"].objects], d)
    assert all(r["cap"].finish_reason == "length" and r["cap"].completion_tokens == 4 for r in good)
    texts = spark.createDataFrame([(t,) for t in TEXTS], "text string")
    text_vecs = [r.v for r in texts.select(embed_text("text").alias("v")).collect()]
    _close(text_vecs, run_adapter(FeatureExtraction({}), vision["clip"], TEXTS))


def test_image_embeddings_job(spark: Any, vision: dict[str, Path], tmp_path: Path) -> None:
    """conf/image_embeddings.yaml: the sample images folder to Delta with a tiny CLIP."""
    from hfspark.flavor import save_model
    from hfspark.jobs import load_config, run_job

    root = Path(__file__).resolve().parents[1]
    save_model(str(vision["clip"]), tmp_path / "clip", task="image-feature-extraction")
    conf = load_config(
        root / "conf" / "image_embeddings.yaml",
        [
            f"models.embedding.uri={tmp_path / 'clip'}",
            f"input.path={root / 'data' / 'images'}",
            f"output.path={tmp_path / 'out'}",
            "run.report_path=null",
            "run.progress=off",
            "models.embedding.options.device=cpu",
        ],
    )
    report = run_job(conf, spark)
    assert report.status == "succeeded", report.reason
    rows = spark.read.format("delta").load(str(tmp_path / "out")).collect()
    files = sorted(p.name for p in (root / "data" / "images").iterdir())
    assert sorted(Path(r.path).name for r in rows) == files and "content" not in rows[0].asDict()
    vectors = {Path(r.path).name: r.embedding.embedding for r in rows}
    expected = run_adapter(
        ImageFeatureExtraction({}),
        vision["clip"],
        [(root / "data" / "images" / f).read_bytes() for f in files],
    )
    for name, vec in zip(files, expected, strict=True):
        _close(vectors[name], vec)
