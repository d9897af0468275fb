"""Where the real Violet sandbox responses live for the tests.

A copy of ``shared/violet/samples`` is kept in ``tests/data/violet_samples`` so that a clone of
this repository is self-contained; `test_samples_copy_matches_shared` fails when the shared
folder (beside the repository, in development and CI) has changed and the copy was not refreshed.
"""

from __future__ import annotations

from pathlib import Path

SAMPLES = Path(__file__).resolve().parent / "data" / "violet_samples"
SHARED_SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "violet" / "samples"
