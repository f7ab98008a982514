"""Loaded for every test path (tests/ and the doctests in jaxgd/): the persistent
compilation cache goes to a temporary folder, never the user's home."""

import os
import shutil
import tempfile

_CACHE = tempfile.mkdtemp(prefix="jaxgd-test-xla-")


def pytest_configure(config):
    os.environ["JAXGD_CACHE_DIR"] = _CACHE


def pytest_unconfigure(config):
    shutil.rmtree(_CACHE, ignore_errors=True)
