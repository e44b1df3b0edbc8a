"""Suite-wide isolation: the tests never read or write the user's spec directory or model cache.

A `host-measured` spec probed by the user, or a stale cached import, would otherwise change what
the tests see.  Each test session gets fresh directories; tests that need their own set them with
monkeypatch as usual.
"""

from __future__ import annotations

import os
import tempfile

import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_user_dirs():
    with tempfile.TemporaryDirectory(prefix="opscope-tests-") as root:
        saved = {k: os.environ.get(k) for k in ("OPSCOPE_SPEC_DIR", "OPSCOPE_CACHE_DIR")}
        os.environ["OPSCOPE_SPEC_DIR"] = os.path.join(root, "specs")
        os.environ["OPSCOPE_CACHE_DIR"] = os.path.join(root, "cache")
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
