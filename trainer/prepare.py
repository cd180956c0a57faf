"""`prepare-data`: writes a source (`trainer.sources`) under DATA_URL in the layout `trainer.data` reads.

The source is streamed twice (fingerprint and checks, then the shards), so memory stays flat in its size; the
same source prepared again with the same shard count writes nothing; manifest.json is written last.
"""

from __future__ import annotations

import json
import re
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from common.errors import UserError
from trainer import cli
from trainer.data import FORMAT, IMAGE_SHAPE, MANIFEST, SPLITS, TEST_ARRAYS, read_manifest
from trainer.publish import parallel_map, sha256_file
from trainer.sources import DEFAULT_SOURCE, LAYOUT, Column, Source, block_sizes, open_source, short_error
from trainer.store import Store, open_store

_SHARD = re.compile(r"^(train|test)-\d{5}-of-\d{5}\.tfrecord$")


def add_arguments(parser) -> None:
    cli.env_arg(parser, "--data-url", "DATA_URL", "where to write the dataset: s3://bucket/prefix or file:///path")
    parser.add_argument(
        "--source",
        default=DEFAULT_SOURCE,
        help="an https:// URL or a path of an mnist.npz-layout file (x_train, y_train, x_test, y_test), "
        "or 'digits' for scikit-learn's bundled digits upscaled to 28x28 (offline) (default: %(default)s)",
    )
    parser.add_argument("--shards", type=int, default=4, help="TFRecord files per split (default: 4)")


def run(args) -> dict:
    from common import rules

    for p in rules.shards_problems(args.shards):
        raise UserError(p.message(), p.value, p.fix)
    store = open_store(args.data_url, "DATA_URL")
    store.check()
    manifest, written = _prepare(args.source, store, args.shards)
    return {
        "data_url": store.url,
        "written": written,
        "status": "written" if written else "unchanged: same source already prepared, nothing rewritten",
        "fingerprint": manifest["fingerprint"],
        "train": manifest["splits"]["train"]["count"],
        "test": manifest["splits"]["test"]["count"],
        "shards": len(manifest["splits"]["train"]["shards"]),
    }


def shard_name(split: str, index: int, total: int) -> str:
    return f"{split}-{index:05d}-of-{total:05d}.tfrecord"


def _write_tfrecord(path: Path, rows) -> None:
    """One TFRecord file from (x uint8 [n,28,28], y int64 [n]) blocks."""
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(path)) as writer:
        for x, y in rows:
            for image, label in zip(x, y, strict=True):
                example = tf.train.Example(features=tf.train.Features(feature={
                    "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image.tobytes()])),
                    "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
                }))
                writer.write(example.SerializeToString())


def _write_npz(path: Path, columns: dict[str, Column]) -> None:
    """An uncompressed `.npz` (as np.savez writes) of the given columns, streamed a block at a time."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, column in columns.items():
            header = np.lib.format.header_data_from_array_1_0(np.empty((0,), column.out_dtype))
            header["shape"] = column.out_shape
            with archive.open(f"{name}.npy", "w", force_zip64=True) as out:
                np.lib.format.write_array_header_1_0(out, header)
                for rows in column.blocks(block_sizes(column.count)):
                    out.write(np.ascontiguousarray(rows).tobytes())


def _unchanged(store: Store, fp: str, shards: int) -> dict | None:
    """The existing manifest if it describes this source and shard count and all its files are there."""
    try:
        manifest = read_manifest(store)
    except UserError:
        return None
    if manifest.get("fingerprint") != fp or len(manifest["splits"]["train"]["shards"]) != shards:
        return None
    present = store.list()
    files = [s for split in SPLITS for s in manifest["splits"][split]["shards"]]
    files.append(manifest["arrays"]["test"])
    return manifest if all(present.get(f["name"]) == f["size"] for f in files) else None


def prepare(source: str, store: Store, shards: int = 4) -> dict:
    """Writes the dataset from `source` under `store`; returns the manifest. Same source again: no writes."""
    return _prepare(source, store, shards)[0]


def _prepare(source: str, store: Store, shards: int) -> tuple[dict, bool]:
    with open_source(source) as opened:
        return _prepare_from(opened, source, store, shards)


def _prepare_from(opened: Source, source: str, store: Store, shards: int) -> tuple[dict, bool]:
    """Streams the source twice (fingerprint and checks, then the shards): memory stays flat in its size."""
    try:
        fp = opened.fingerprint(LAYOUT)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:  # truncated or corrupt data
        raise UserError("cannot read the dataset as .npz", source, f"provide {LAYOUT} ({short_error(e)})") from e
    existing = _unchanged(store, fp, shards)
    if existing is not None:
        return existing, False
    # A different dataset is replacing this one: drop the old manifest first, so readers see "no dataset"
    # rather than a manifest whose shards are being overwritten.
    store.delete([MANIFEST])
    manifest = {"format": FORMAT, "source": source, "fingerprint": fp, "image_shape": IMAGE_SHAPE,
                "splits": {}, "arrays": {}}
    with tempfile.TemporaryDirectory(prefix="prepare-data-") as tmp:
        tmp = Path(tmp)
        jobs = []
        for split in SPLITS:
            count = opened.count(split)
            n = max(1, min(shards, count))
            sizes = [count // n + (1 if i < count % n else 0) for i in range(n)]  # as np.array_split divides
            xs = opened.columns[f"x_{split}"].blocks(b for size in sizes for b in block_sizes(size))
            ys = opened.columns[f"y_{split}"].blocks(b for size in sizes for b in block_sizes(size))
            entries = []
            for i, size in enumerate(sizes):
                name = shard_name(split, i, n)
                blocks = ((next(xs), next(ys)) for _ in block_sizes(size))
                _write_tfrecord(tmp / name, blocks)
                entries.append({"name": name, "count": size, "size": (tmp / name).stat().st_size,
                                "sha256": sha256_file(tmp / name)})
                jobs.append(name)
            manifest["splits"][split] = {"count": count, "shards": entries}
        _write_npz(tmp / TEST_ARRAYS, {"x": opened.columns["x_test"], "y": opened.columns["y_test"]})
        manifest["arrays"]["test"] = {"name": TEST_ARRAYS, "size": (tmp / TEST_ARRAYS).stat().st_size,
                                      "sha256": sha256_file(tmp / TEST_ARRAYS)}
        jobs.append(TEST_ARRAYS)
        parallel_map(lambda name: store.put_file(name, tmp / name), jobs)
    store.put_bytes(MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())
    # Shards of an earlier preparation with another shard count are no longer referenced: remove them.
    stale = [k for k in store.list() if _SHARD.match(k) and k not in jobs]
    store.delete(stale)
    return manifest, True

