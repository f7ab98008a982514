"""Suite-wide settings: strict dtype promotion, no implicit rank promotion, warnings are
errors (pyproject.toml)."""

import jax
import pytest

jax.config.update("jax_numpy_dtype_promotion", "strict")
# Broadcasting [M] against [U, M] must be spelled out: an implicit rank promotion is how a
# [U, M] versus [M, U] mix-up passes silently (Equinox's test suite sets the same).
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def x64():
    """Run a test with 64-bit floats, restoring the default afterwards."""
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", False)
