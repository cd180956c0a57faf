"""Even data across any worker count: every process gets an equal share of the records,
touches no more than one file beyond its share, and the stack's shard count gives whole files."""

from __future__ import annotations

import hashlib
import math

import pytest

from common import rules
from trainer import data
from trainer.store import open_store

TRAIN = 1437  # the digits train split


def even(total: int, files: int) -> list[int]:
    """Record counts of `files` shards as prepare-data writes them (np.array_split)."""
    return [total // files + (1 if i < total % files else 0) for i in range(files)]


@pytest.mark.parametrize("files", [1, 3, 4, 7])
@pytest.mark.parametrize("readers", [1, 2, 3, 4, 5, 8, 9, 65])
def test_equal_shares_touching_at_most_one_extra_file(files, readers):
    counts = even(TRAIN, files)
    shares = [data.share(counts, i, readers) for i in range(readers)]
    lengths = [sum(b - a for _, a, b in s) for s in shares]
    assert max(lengths) - min(lengths) <= 1 and sum(lengths) == TRAIN
    seen = [(f, r) for s in shares for f, a, b in s for r in range(a, b)]
    assert len(seen) == len(set(seen)) == TRAIN  # every record exactly once
    per_file = max(counts)
    for s, n in zip(shares, lengths, strict=True):
        assert len(s) <= math.ceil(n / per_file) + 1, (s, n)


def test_three_processes_on_four_files_no_longer_get_2_1_1():
    counts = even(TRAIN, 4)
    old = [sum(counts[i::3]) for i in range(3)]  # shards[rank::n]
    assert max(old) >= 2 * min(old) - 1
    new = [sum(b - a for _, a, b in data.share(counts, i, 3)) for i in range(3)]
    assert new == [479, 479, 479]


@pytest.mark.parametrize("processes", [1, 2, 3, 5, 8, 65])
def test_the_stacks_shard_count_gives_whole_files(processes):
    files = rules.shards_for(processes)
    assert files % processes == 0 and files >= min(rules.MIN_SHARDS, files)
    counts = even(TRAIN, files)
    for i in range(processes):
        mine = data.share(counts, i, processes)
        assert len(mine) == files // processes
        assert all(a == 0 and b == counts[f] for f, a, b in mine)


def _records(ds) -> list[str]:
    return [hashlib.sha256(image.numpy().tobytes() + bytes([int(label)])).hexdigest() for image, label in ds]


def test_readers_of_a_real_dataset_on_s3(bucket, run_trainer, tmp_path):
    url = f"s3://{bucket}/data/mnist"
    run_trainer("prepare-data", "--source", "digits", "--shards", "4", env={"DATA_URL": url}, check=True)
    store = open_store(url, "DATA_URL")
    whole, _ = data.dataset(store, "train", cache_dir=tmp_path / "all")
    everything = sorted(_records(whole))
    for readers in (3, 6):
        got, downloaded = [], []
        for i in range(readers):
            cache = tmp_path / f"r{readers}-{i}"
            ds, count = data.dataset(store, "train", shard_index=i, num_shards=readers, cache_dir=cache)
            records = _records(ds)
            assert len(records) == count
            got += records
            downloaded.append(len(list(cache.glob("*.tfrecord"))))
        assert sorted(got) == everything  # the whole split, each record once
        share = TRAIN / readers
        assert max(downloaded) <= math.ceil(share / (TRAIN / 4)) + 1, downloaded
        assert max(downloaded) < 4  # not every file, as shards[rank::n] gave past 4 readers
