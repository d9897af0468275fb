"""The repository's copy of Violet's sandbox samples is the one in shared/."""

from __future__ import annotations

import pytest

from tests.samples import SAMPLES, SHARED_SAMPLES


def test_samples_copy_matches_shared() -> None:
    if not SHARED_SAMPLES.exists():
        pytest.skip("shared/ is not beside this clone")
    shared = {p.name: p.read_bytes() for p in SHARED_SAMPLES.iterdir() if p.is_file()}
    ours = {p.name: p.read_bytes() for p in SAMPLES.iterdir() if p.is_file()}
    assert ours == shared
