from __future__ import annotations

from pathlib import Path

import pytest

from mvit_video.data.toy import make_toy_dataset


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory) -> Path:
    """A small toy dataset: 12 train, 6 val and 6 test videos."""
    out = tmp_path_factory.mktemp("toy") / "data"
    make_toy_dataset(out, num_per_class=2, val_per_class=1, test_per_class=1)
    return out
