"""The JAX methods: jaxgd itself, and the optax loop people write today.

- ``jaxgd``: one ``jaxgd.sweep`` of all K configs (one compiled program);
- ``jaxgd_single``: ``jaxgd.sweep`` called once per config;
- ``optax_loop``: one jitted optax step, hyperparameters as arrays in the state
  (compiled once), a Python loop over configs, epochs and batches.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxgd

from .workload import JaxgdPrograms, Method, Outcome, Work, batch_rows, initial_params

__all__ = ["JaxgdSweep", "JaxgdSingle", "OptaxLoop"]

PyTree = Any


class JaxgdSweep(Method):
    """All K configs in one ``jaxgd.sweep``: one compiled program."""

    name = "jaxgd"

    def prepare(self) -> float:
        self.device_data = {k: jax.device_put(v) for k, v in self.workload.data.items()}
        return 0.0

    def _sweep(self, configs: list[dict[str, float]]) -> jaxgd.SweepResult:
        return jaxgd.sweep(
            self.workload.problem,
            self.device_data,
            optimizer="sgd",
            space=configs,
            batch_size=self.batch_size,
            epochs=self.workload.epochs,
            validation=None,
        )

    def run(self, work: Work) -> Outcome:
        start = time.perf_counter()
        result = self._sweep(self.configs[: work.configs])
        seconds = time.perf_counter() - start
        compile_seconds = result.total_compile_seconds
        return Outcome(
            seconds,
            [float(x) for x in result.history["train_loss"][:, -1]],
            compile_seconds=compile_seconds,
            engine_seconds=result.total_seconds,
            programs=JaxgdPrograms(work.configs, result.compiled, compile_seconds),
        )


class JaxgdSingle(JaxgdSweep):
    """``jaxgd.sweep`` once per config (one program, compiled on the first call)."""

    name = "jaxgd_single"
    truncate_by = "configs"

    def run(self, work: Work) -> Outcome:
        losses, compile_seconds, engine_seconds, compiled = [], 0.0, 0.0, []
        start = time.perf_counter()
        for config in self.configs[: work.configs]:
            result = self._sweep([config])
            losses.append(float(result.history["train_loss"][0, -1]))
            compile_seconds += result.total_compile_seconds
            engine_seconds += result.total_seconds
            compiled = compiled or result.compiled  # every call runs the same program
        seconds = time.perf_counter() - start
        programs = JaxgdPrograms(1, compiled, compile_seconds)
        return Outcome(seconds, losses, compile_seconds, engine_seconds, programs)


def _optax_step(params, opt_state, loss_total, batch_index, mask, data, *, problem, tx):
    """One update of one config: the masked mean loss's gradient, then optax's update."""
    batch = jax.tree.map(lambda leaf: jnp.take(leaf, batch_index, axis=0), data)

    def mean_loss(params):
        losses = jax.vmap(problem.loss, in_axes=(None, 0))(params, batch)
        total = jnp.sum(jnp.where(mask, losses, jnp.zeros_like(losses)))
        return total / jnp.sum(mask.astype(losses.dtype)), total

    (_, batch_total), grads = jax.value_and_grad(mean_loss, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss_total + batch_total


class OptaxLoop(Method):
    """The idiomatic loop: one jitted step, compiled once, hyperparameters as arrays in
    the optimizer state (``optax.inject_hyperparams``); Python loops over configs, epochs
    and batches; the data lives on the device and each step gathers its batch."""

    name = "optax_loop"
    truncate_by = "configs"

    def prepare(self) -> float:
        workload = self.workload
        self.tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.0, momentum=0.0)
        self.data = {k: jax.device_put(v) for k, v in workload.data.items()}
        self.params = initial_params(workload.problem, workload.seed)
        # Every batch is padded to batch_size and masked, so one shape: one compile.
        self.rows, self.masks = [], []
        for order in self.orders:
            epoch_rows, epoch_masks = [], []
            for rows in batch_rows(order, self.batch_size):
                mask = np.zeros(self.batch_size, bool)
                mask[: rows.size] = True
                padded = np.zeros(self.batch_size, np.int32)
                padded[: rows.size] = rows
                epoch_rows.append(padded)
                epoch_masks.append(mask)
            self.rows.append(epoch_rows)
            self.masks.append(epoch_masks)
        step = functools.partial(_optax_step, problem=workload.problem, tx=self.tx)
        opt_state = self.tx.init(self.params)
        args = (
            self.params,
            opt_state,
            jnp.zeros([], jnp.float32),
            self.rows[0][0],
            self.masks[0][0],
            self.data,
        )
        start = time.perf_counter()
        self.step = jax.jit(step, donate_argnums=(0, 1, 2)).lower(*args).compile()
        return time.perf_counter() - start

    def run(self, work: Work) -> Outcome:
        losses = []
        start = time.perf_counter()
        for config in self.configs[: work.configs]:
            params = jax.device_put(self.params)
            # The config's values live in the state; the compiled step reads them there.
            opt_state = optax.inject_hyperparams(optax.sgd)(**config).init(params)
            for rows, masks in zip(self.rows, self.masks, strict=True):
                total = jnp.zeros([], jnp.float32)
                for batch_index, mask in zip(rows, masks, strict=True):
                    params, opt_state, total = self.step(
                        params, opt_state, total, batch_index, mask, self.data
                    )
            losses.append(float(total) / self.workload.num_examples)
        jax.block_until_ready(params)
        return Outcome(time.perf_counter() - start, losses)
