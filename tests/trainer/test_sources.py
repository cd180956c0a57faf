"""Dataset sources (trainer/sources.py): the digits, .npz files and URLs, and the errors for anything else."""

from __future__ import annotations

import functools
import http.server
import threading

import numpy as np
import pytest

from common.errors import UserError
from demo.s3server import free_port
from trainer import sources
from trainer.prepare import prepare
from trainer.store import open_store


def test_digits_source_is_fixed_and_mnist_shaped(digits):
    assert digits["x_train"].shape == (1437, 28, 28) and digits["x_test"].shape == (360, 28, 28)
    assert digits["x_train"].dtype == np.uint8 and digits["y_test"].dtype == np.int64
    assert set(np.unique(digits["y_test"])) == set(range(10))
    # MNIST framing: the digit fills a 20x20 box, 4 blank pixels around it.
    assert digits["x_train"][:, :4].max() == 0 and digits["x_train"][:, 4:24, 4:24].max() == 255
    assert sources.fingerprint(digits) == sources.fingerprint(sources.digits_arrays())  # same split every time


def test_bad_sources_are_user_errors(tmp_path, run_trainer, bucket):
    env = {"DATA_URL": f"s3://{bucket}/data/bad"}
    np.savez(tmp_path / "empty.npz", x_train=np.zeros((0, 28, 28), np.uint8), y_train=np.zeros(0, np.int64),
             x_test=np.zeros((0, 28, 28), np.uint8), y_test=np.zeros(0, np.int64))
    np.savez(tmp_path / "layout.npz", images=np.zeros((5, 28, 28), np.uint8))
    np.savez(tmp_path / "shape.npz", x_train=np.zeros((5, 32, 32), np.uint8), y_train=np.zeros(5, np.int64),
             x_test=np.zeros((5, 32, 32), np.uint8), y_test=np.zeros(5, np.int64))
    (tmp_path / "garbage.npz").write_bytes(b"not a zip file")
    cases = {
        "empty.npz": "empty dataset",
        "layout.npz": "wrong npz layout: missing x_train",
        "shape.npz": "not [N,28,28]",
        "garbage.npz": "the dataset source is not an .npz archive",
        "absent.npz": "dataset source not found",
    }
    for name, message in cases.items():
        with pytest.raises(UserError, match=message.replace("[", r"\[")):
            sources.open_source(str(tmp_path / name))
    # Through the CLI: one line, exit 2, nothing written.
    proc = run_trainer("prepare-data", "--source", str(tmp_path / "empty.npz"), env=env)
    assert proc.returncode == 2 and "error: empty dataset" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert open_store(env["DATA_URL"]).list() == {}


def not_npz_files(tmp_path, digits) -> dict:
    """Readable files that are not an mnist.npz, each with what the error must say it is."""
    import gzip
    import pickle
    import zipfile

    np.savez(tmp_path / "good.npz", **digits)
    good = (tmp_path / "good.npz").read_bytes()
    np.save(tmp_path / "x_train.npy", digits["x_train"])
    (tmp_path / "arrays.pkl").write_bytes(pickle.dumps(digits, protocol=4))
    (tmp_path / "page.npz").write_bytes(b"<!DOCTYPE html><html><body>403 Forbidden</body></html>")
    (tmp_path / "mnist.npz.gz").write_bytes(gzip.compress(good))
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "cut.npz").write_bytes(good[:len(good) // 2])
    middle = len(good) // 2
    (tmp_path / "flipped.npz").write_bytes(good[:middle] + bytes([good[middle] ^ 0xFF]) + good[middle + 1:])
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
        z.writestr("readme.txt", "hello")
    np.savez(tmp_path / "objects.npz", x_train=np.array([None] * 3, dtype=object), y_train=digits["y_train"],
             x_test=digits["x_test"], y_test=digits["y_test"])
    return {
        "x_train.npy": "is a single .npy array (np.save), not an .npz archive",
        "arrays.pkl": "is a Python pickle, not an .npz archive",
        "page.npz": "is an HTML or XML page",
        "mnist.npz.gz": "is gzip-compressed, not an .npz archive (decompress it first)",
        "empty.npz": "is an empty file, not an .npz archive",
        "cut.npz": "is a zip archive cut short or damaged",
        "flipped.npz": "cannot read the dataset as .npz",
        "other.zip": "wrong npz layout: missing x_train, y_train, x_test, y_test (has no .npy arrays)",
        "objects.npz": "wrong npz layout: x_train holds Python objects (pickled data), not numbers",
    }


def test_sources_that_are_not_npz_get_one_clear_error(tmp_path, digits, run_trainer, bucket):
    store = open_store(f"file://{tmp_path}/out", "DATA_URL")
    for name, message in not_npz_files(tmp_path, digits).items():
        with pytest.raises(UserError) as e:
            prepare(str(tmp_path / name), store)
        assert message in str(e.value) and str(tmp_path / name) in str(e.value), (name, str(e.value))
        assert "allow_pickle" not in str(e.value), name
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    # Through the CLI: one line and exit 2, as docs/trainer.md promises.
    env = {"DATA_URL": f"s3://{bucket}/data/bad"}
    for name in ("x_train.npy", "arrays.pkl"):
        proc = run_trainer("prepare-data", "--source", str(tmp_path / name), env=env)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("error: the dataset source is ") and proc.stderr.count("\n") == 1
        assert "Traceback" not in proc.stderr and "allow_pickle" not in proc.stderr
    assert open_store(env["DATA_URL"]).list() == {}


def test_source_url_is_downloaded(tmp_path, digits):
    """An http(s) source is fetched (from a local server here: no internet at test time)."""
    np.savez(tmp_path / "mnist.npz", **digits)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        with sources.open_source(f"{url}/mnist.npz") as opened:
            assert opened.fingerprint() == sources.fingerprint(digits)
        with pytest.raises(UserError, match="cannot download") as e:
            sources.open_source(f"{url}/missing.npz")
        assert "--source digits" in e.value.fix
    finally:
        server.shutdown()
