"""The CPU config-block rule and the footprint it reads."""

import jax.numpy as jnp
import pytest

import jaxgd
from jaxgd.core.blocks import Footprint, default_config_block, footprint


def test_default_config_block_blocks_large_activations_on_cpu():
    mlp = Footprint(activation_floats=825, parameter_floats=19210)  # checked below
    assert default_config_block(64, 64, "cpu", mlp) is None  # 52,800 floats < 2^16
    assert default_config_block(128, 64, "cpu", mlp) is None  # 105,600 < 8 x 19,210
    assert default_config_block(256, 64, "cpu", mlp) == 8  # 2^21 / 211,200 = 9.9
    assert default_config_block(1024, 64, "cpu", mlp) == 2
    assert default_config_block(4096, 64, "cpu", mlp) == 1
    assert default_config_block(4096, 64, "gpu", mlp) is None
    assert default_config_block(4096, 64, "gpu", None) is None  # sweep's call off the CPU
    assert default_config_block(256, 8, "cpu", mlp) is None  # one block would be all of them
    cnn = Footprint(activation_floats=6885, parameter_floats=3818)
    assert default_config_block(16, 64, "cpu", cnn) == 16


def test_footprint_counts_what_depends_on_the_example():
    problem = jaxgd.problems.mlp((64, 256, 10))
    example = {"x": jnp.zeros(64), "y": jnp.zeros([], jnp.int32)}
    mlp = footprint(problem, example)
    assert mlp.parameter_floats == 64 * 256 + 256 + 256 * 10 + 10
    # 256 x (matmul, bias, relu) + 10 x (matmul, bias) + the cross-entropy's small values.
    assert 3 * 256 + 2 * 10 < mlp.activation_floats < 3 * 256 + 100
    # Values of the parameters alone (the CNN's reshaped kernels) are not counted.
    cnn, _ = jaxgd.problems.digits_cnn()
    cnn_floats = footprint(cnn, {"x": jnp.zeros(64), "y": example["y"]}).activation_floats
    assert 64 * 8 * 3 < cnn_floats < 8000


def test_config_block_is_validated():
    with pytest.raises(ValueError, match="config_block"):
        jaxgd.SweepOptions(config_block=0)
