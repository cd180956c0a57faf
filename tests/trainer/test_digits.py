"""The digits that ship with the trainer (`trainer/digits.npz`) are exactly scikit-learn's, split as before.

`--source digits` must work in the trainer image, which has no scikit-learn: the package carries the 8x8
images and the split instead. This test derives both from scikit-learn (a dev requirement) and compares.
Run as a script to rewrite the file after a deliberate change:

    .venv/bin/python -m tests.trainer.test_digits
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np

from trainer import sources

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "trainer" / sources.DIGITS_FILE
LICENSE = ROOT / "trainer" / "digits.LICENSE.txt"


def from_sklearn() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.uint8)  # integers 0..16 stored as float64 by scikit-learn
    assert np.array_equal(images, digits.images), "scikit-learn's digits are no longer integers 0..16"
    y = digits.target.astype(np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(y)), test_size=sources.DIGITS_TEST_COUNT, stratify=y, random_state=sources.DIGITS_SEED
    )
    return {"x_train": images[train_idx], "y_train": y[train_idx], "x_test": images[test_idx], "y_test": y[test_idx]}


def test_shipped_digits_equal_scikit_learns():
    expected = from_sklearn()
    with np.load(SHIPPED) as shipped:
        assert sorted(shipped.files) == sorted(expected)
        for key, value in expected.items():
            assert shipped[key].dtype == value.dtype and np.array_equal(shipped[key], value), (
                f"{SHIPPED.name}[{key}] differs from scikit-learn's: "
                "run `.venv/bin/python -m tests.trainer.test_digits`"
            )


def test_digits_arrays_need_no_scikit_learn(monkeypatch):
    # The same 28x28 arrays as before the data were shipped (fingerprint of the scikit-learn-built split).
    monkeypatch.setitem(sys.modules, "sklearn", None)  # any import of sklearn now raises ImportError
    arrays = sources.digits_arrays()
    assert sources.fingerprint(arrays) == "7478cc6a6097779de1cb2a4a7b5a6a7e6d3c61e52024feff096ea9724b688d20"
    assert arrays["x_train"].shape == (1437, 28, 28) and arrays["x_test"].shape == (360, 28, 28)


def test_licence_notice_ships_beside_the_data():
    text = LICENSE.read_text()
    assert "BSD 3-Clause License" in text and "scikit-learn developers" in text
    assert "Optical Recognition of Handwritten Digits" in text
    # The image copies the whole package folder, so the notice travels with the data.
    assert LICENSE.parent == SHIPPED.parent


def write(path: Path = SHIPPED) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **from_sklearn())
    path.write_bytes(buf.getvalue())


if __name__ == "__main__":
    write()
    print(f"wrote {SHIPPED} ({SHIPPED.stat().st_size} bytes)")
