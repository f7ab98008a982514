"""The JAX methods: jaxgd itself, and the optax loop people write today.

- ``jaxgd``: one ``jaxgd.sweep`` of all K configs (one compiled program);
- ``jaxgd_single``: ``jaxgd.sweep`` called once per config;
- ``optax_loop``: one jitted optax step, hyperparameters as arrays in the state
  (compiled once), a Python loop over configs, epochs and batches;
- ``jax_scan_vmap``: what a JAX expert writes by hand for K configs: one ``jax.jit`` of
  ``lax.scan`` over steps of ``jax.vmap`` over configs of the plain optax step, with no
  divergence guard, no masking and no evaluation.
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxgd

from .workload import JaxgdPrograms, Method, Outcome, Work, batch_rows, initial_params

if TYPE_CHECKING:
    from jaxgd import Problem

__all__ = ["JaxgdSweep", "JaxgdSingle", "OptaxLoop", "JaxScanVmap"]

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


# SGD with heavy-ball momentum, its hyperparameters arrays in the state. The values given
# here only build the transformation: ``update`` reads each config's from its state.
_SGD = optax.inject_hyperparams(optax.sgd)
_SGD_UPDATE = _SGD(learning_rate=0.0, momentum=0.0)


class ScanVmapState(NamedTuple):
    """The K configs' parameters and optax states, each leaf with a leading ``[K]`` axis."""

    params: PyTree
    opt_state: PyTree


def scan_vmap_step(
    state: ScanVmapState, rows: jax.Array, data: PyTree, *, problem: Problem
) -> tuple[ScanVmapState, jax.Array]:
    """One SGD step of every config on the batch ``data[rows]`` (shared by the configs).

    For each config ``k``: ``g = ∇ (1/B) Σ_{i in rows} ℓ(θ_k, x_i)``, then optax's update
    ``b ← m_k b + g, θ_k ← θ_k − lr_k b``. Returns the new state and each config's loss
    summed over the batch, ``[K]`` (the mean times B), for the epoch's mean.
    """
    batch = jax.tree.map(lambda leaf: jnp.take(leaf, rows, axis=0), data)

    def mean_loss(params):
        return jnp.mean(jax.vmap(problem.loss, in_axes=(None, 0))(params, batch))

    def one_config(params, opt_state):
        loss, grads = jax.value_and_grad(mean_loss)(params)
        updates, opt_state = _SGD_UPDATE.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    params, opt_state, losses = jax.vmap(one_config)(state.params, state.opt_state)
    return ScanVmapState(params, opt_state), losses * rows.shape[0]


def scan_vmap_epoch(
    state: ScanVmapState, order: jax.Array, data: PyTree, *, problem: Problem, batch_size: int
) -> tuple[ScanVmapState, jax.Array]:
    """One epoch in the order ``order`` ``[N]``: a ``lax.scan`` over the full batches,
    then, when ``batch_size`` does not divide N, one step on the smaller last batch (its
    own shape: exact without masking). Returns the state and each config's mean training
    loss over the epoch, ``[K]``."""
    step = functools.partial(scan_vmap_step, data=data, problem=problem)
    full = order.shape[0] // batch_size
    state, loss_sums = jax.lax.scan(
        step, state, order[: full * batch_size].reshape(full, batch_size)
    )
    loss_total = jnp.sum(loss_sums, axis=0)
    if full * batch_size < order.shape[0]:
        state, last_sums = step(state, order[full * batch_size :])
        loss_total = loss_total + last_sums
    return state, loss_total / order.shape[0]


def scan_vmap_train(
    params: PyTree,
    hyperparams: dict[str, jax.Array],
    data: PyTree,
    orders: jax.Array,
    *,
    problem: Problem,
    batch_size: int,
) -> tuple[PyTree, jax.Array]:
    """Train K configs from the same ``params``: ``hyperparams`` ``{name: [K]}`` (the
    arguments of ``optax.sgd``), epochs in the orders ``orders`` ``[epochs, N]``.

    Returns the final parameters (leading ``[K]``) and the mean training loss of each
    epoch and config, ``[epochs, K]``."""
    count = jax.tree.leaves(hyperparams)[0].shape[0]
    params = jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (count, *leaf.shape)), params)
    opt_state = jax.vmap(lambda p, hp: _SGD(**hp).init(p))(params, hyperparams)
    epoch = functools.partial(scan_vmap_epoch, data=data, problem=problem, batch_size=batch_size)
    state, epoch_losses = jax.lax.scan(epoch, ScanVmapState(params, opt_state), orders)
    return state.params, epoch_losses


class JaxScanVmap(Method):
    """The hand-written baseline: one ``jax.jit`` (AOT-compiled once) of ``lax.scan``
    over epochs and steps of ``jax.vmap`` over the K configs of the plain optax step,
    data on the device and each batch gathered inside the scan from the precomputed
    per-epoch orders. No divergence guard, no masking (a partial last batch is one step
    of its own shape), no evaluation: the least a program training K configs must do.
    Always runs the whole work, like jaxgd."""

    name = "jax_scan_vmap"

    def prepare(self) -> float:
        workload = self.workload
        self.params = jax.device_put(initial_params(workload.problem, workload.seed))
        self.hyperparams = {
            name: jnp.asarray([config[name] for config in self.configs], jnp.float32)
            for name in ("learning_rate", "momentum")
        }
        self.data = {k: jax.device_put(v) for k, v in workload.data.items()}
        self.device_orders = jnp.asarray(self.orders, jnp.int32)
        train = functools.partial(
            scan_vmap_train, problem=workload.problem, batch_size=self.batch_size
        )
        args = (self.params, self.hyperparams, self.data, self.device_orders)
        start = time.perf_counter()
        self.train = jax.jit(train).lower(*args).compile()
        return time.perf_counter() - start

    def run(self, work: Work) -> Outcome:
        if work != Work(len(self.configs)):
            raise ValueError(f"{self.name} runs the whole work only, not {work}")
        start = time.perf_counter()
        params, epoch_losses = self.train(
            self.params, self.hyperparams, self.data, self.device_orders
        )
        jax.block_until_ready(params)
        losses = np.asarray(epoch_losses[-1]).tolist()
        return Outcome(time.perf_counter() - start, losses)
