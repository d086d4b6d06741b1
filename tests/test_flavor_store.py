"""hfspark.flavor stores: a real S3 (moto server) through s3fs, the local cache, retries, URIs."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hfspark.errors import ConfigError, ModelStoreError, ModelValidationError
from hfspark.flavor import load_model, read_info, resolve_local, save_model
from hfspark.flavor.store import cache_dir_for, local_path

REPO = Path(__file__).resolve().parents[1]
BUCKET = "models"


@pytest.fixture(scope="module", autouse=True)
def _env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    keys = (
        "HFSPARK_CACHE_DIR",
        "HFSPARK_STORE_BACKOFF",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
    )
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(
        {
            "HFSPARK_CACHE_DIR": str(tmp_path_factory.mktemp("hfspark-cache")),
            "HFSPARK_STORE_BACKOFF": "0.01",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, Any]]:
    """A real S3 API (moto's server on 127.0.0.1) with one bucket; yields fsspec options."""
    pytest.importorskip("s3fs")
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    import boto3

    boto3.client("s3", endpoint_url=url).create_bucket(Bucket=BUCKET)
    yield {"endpoint_url": url, "key": "testing", "secret": "testing", "skip_instance_cache": True}
    server.stop()


def _keys(options: dict[str, Any], prefix: str) -> list[str]:
    import boto3

    client = boto3.client("s3", endpoint_url=options["endpoint_url"])
    got = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return sorted(o["Key"] for o in got)


def test_s3_save_read_load(s3: dict[str, Any], tiny_models: dict[str, Path]) -> None:
    import transformers

    uri = f"s3://{BUCKET}/sentiment"
    info = save_model(str(tiny_models["text-classification"]), uri, storage_options=s3)
    assert info.uri == uri and info.root == cache_dir_for(uri)  # the local copy is the cache
    keys = _keys(s3, "sentiment/")
    assert {
        "sentiment/MLmodel",
        "sentiment/model/model.safetensors",
        "sentiment/components/tokenizer/tokenizer_config.json",
    } <= set(keys)

    shutil.rmtree(info.root)  # force a download, as on a fresh machine
    again = read_info(uri, storage_options=s3)
    assert again.root == info.root and again.content_hash == info.content_hash
    assert sorted(
        p.relative_to(info.root).as_posix() for p in info.root.rglob("*") if p.is_file()
    ) == sorted(k.removeprefix("sentiment/") for k in keys)
    assert (
        read_info(uri, storage_options={"endpoint_url": "http://127.0.0.1:9"}).root == info.root
    )  # cached: the store is not contacted again

    pipe = load_model(uri, storage_options=s3, device="cpu")
    ref = transformers.pipeline(
        "text-classification", model=str(tiny_models["text-classification"])
    )
    assert pipe("I love it")[0]["score"] == pytest.approx(ref("I love it")[0]["score"])


def test_s3_overwrite(s3: dict[str, Any], tiny_models: dict[str, Path]) -> None:
    uri = f"s3://{BUCKET}/replace-me"
    first = save_model(str(tiny_models["feature-extraction"]), uri, storage_options=s3)
    with pytest.raises(ConfigError, match="already exists"):
        save_model(str(tiny_models["fill-mask"]), uri, storage_options=s3)
    second = save_model(
        str(tiny_models["token-classification"]), uri, storage_options=s3, overwrite=True
    )
    assert second.task == "token-classification" and second.content_hash != first.content_hash
    shutil.rmtree(second.root)
    assert read_info(uri, storage_options=s3).task == "token-classification"


def test_s3_missing_and_partial_models(
    s3: dict[str, Any], tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(ModelStoreError, match=f"s3://{BUCKET}/nothing-here.*not found"):
        read_info(f"s3://{BUCKET}/nothing-here", storage_options=s3)
    # an upload cut before MLmodel (written last) is not a model
    local = save_model(str(tiny_models["fill-mask"]), tmp_path / "m").root
    (local / "MLmodel").unlink()
    import s3fs

    fs = s3fs.S3FileSystem(**s3)
    fs.put(str(local), f"{BUCKET}/partial", recursive=True)
    with pytest.raises(ModelValidationError, match="neither MLmodel nor config.json"):
        read_info(f"s3://{BUCKET}/partial", storage_options=s3)


def test_save_from_a_remote_folder(
    s3: dict[str, Any], tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    """A bare transformers folder in S3 is copied into the cache, then saved locally."""
    import s3fs

    s3fs.S3FileSystem(**s3).put(
        str(tiny_models["token-classification"]), f"{BUCKET}/bare", recursive=True
    )
    info = save_model(f"s3://{BUCKET}/bare", tmp_path / "m", storage_options=s3)
    assert info.task == "token-classification"
    assert info.content_hash == read_info(tiny_models["token-classification"]).content_hash


def test_unreachable_store_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("s3fs")
    monkeypatch.setenv("HFSPARK_STORE_RETRIES", "2")
    dead = {
        "endpoint_url": f"http://127.0.0.1:{_free_port()}",
        "key": "k",
        "secret": "s",
        "skip_instance_cache": True,
        "config_kwargs": {"connect_timeout": 1, "retries": {"max_attempts": 1}},
    }
    start = time.monotonic()
    with pytest.raises(ModelStoreError, match=r"s3://models/x after 2 attempts"):
        resolve_local("s3://models/x", storage_options=dead)
    assert time.monotonic() - start < 30


_CONCURRENT = textwrap.dedent("""
    import json, os, sys
    from hfspark.flavor.store import resolve_local
    path = resolve_local(sys.argv[1], storage_options=json.loads(sys.argv[2]))
    print(json.dumps([str(path), os.stat(path).st_ino]))
""")


def test_concurrent_processes_download_once(
    s3: dict[str, Any], tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    uri = f"s3://{BUCKET}/shared"
    save_model(str(tiny_models["text-generation"]), uri, storage_options=s3)
    cache = tmp_path / "fresh-cache"  # a machine that has never seen the model
    env = {**os.environ, "PYTHONPATH": str(REPO), "HFSPARK_CACHE_DIR": str(cache)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CONCURRENT, uri, json.dumps(s3)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(tuple(json.loads(out.strip().splitlines()[-1])))
    assert len(set(results)) == 1  # one folder, never replaced under a reader
    root = Path(results[0][0])
    assert root.parent == cache / "models"
    assert not list(root.parent.glob(".tmp-*"))
    os.environ["HFSPARK_CACHE_DIR"], old = str(cache), os.environ["HFSPARK_CACHE_DIR"]
    try:
        assert read_info(uri, storage_options=s3).root == root
    finally:
        os.environ["HFSPARK_CACHE_DIR"] = old


#: copies made by the flaky filesystem, and which of them fail (1-based).
FLAKY: dict[str, Any] = {"calls": 0, "fail": set()}


def _flaky_fs_class() -> type:
    """A local fsspec filesystem (``flaky://``) whose copies fail when told to."""
    from fsspec.implementations.local import LocalFileSystem

    class Flaky(LocalFileSystem):
        protocol = ("flaky",)

        @classmethod
        def _strip_protocol(cls, path: Any) -> str:
            return super()._strip_protocol(str(path).removeprefix("flaky://"))

        def get_file(self, rpath: str, lpath: str, **kwargs: Any) -> None:
            FLAKY["calls"] += 1
            if FLAKY["calls"] in FLAKY["fail"]:
                raise ConnectionResetError("connection reset by peer")
            super().get_file(rpath, lpath, **kwargs)

    return Flaky


def test_transient_errors_are_retried(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    import fsspec

    fsspec.register_implementation("flaky", _flaky_fs_class(), clobber=True)
    saved = save_model(str(tiny_models["fill-mask"]), tmp_path / "m").root
    FLAKY.update(calls=0, fail={2, 3})  # two failed attempts, then success
    info = read_info(f"flaky://{saved}")
    assert info.content_hash == read_info(saved).content_hash
    assert FLAKY["calls"] > 3

    FLAKY.update(calls=0, fail=set(range(1, 100)))
    with pytest.raises(ModelStoreError, match=r"flaky://.*/m2 after 4 attempts.*reset"):
        resolve_local(f"flaky://{shutil.copytree(saved, tmp_path / 'm2')}")
    assert not list((cache_dir_for("x").parent).glob(".tmp-*"))  # failed downloads cleaned up


def test_uri_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert local_path("file:///data/models/a") == Path("/data/models/a")
    assert local_path("dbfs:/FileStore/m") == Path("/dbfs/FileStore/m")
    assert local_path("/dbfs/FileStore/m") == Path("/dbfs/FileStore/m")
    assert local_path("s3://bucket/m") is None and local_path("runs:/abc/model") is None
    with pytest.raises(ConfigError, match="file:///abs/path"):
        local_path("file://otherhost/models/a")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rel").mkdir()
    assert resolve_local("rel") == tmp_path / "rel"
    with pytest.raises(ModelStoreError, match="does not exist"):
        resolve_local(tmp_path / "missing")
    monkeypatch.setenv("HFSPARK_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir_for("s3://b/m") == cache_dir_for("s3://b/m/")
    assert cache_dir_for("s3://b/m").parent == tmp_path / "c" / "models"
    assert cache_dir_for("s3://b/m") != cache_dir_for("s3://b/n")
    with pytest.raises(ConfigError, match="mlflow.log_artifacts"):
        save_model({}, "models:/my-model/1")
