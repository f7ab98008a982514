"""Training throughput vs batch size and vs number of configs, against today's loops.

Every method does the same work: the same model and initial parameters, the same K
configs (a learning-rate x momentum grid, SGD with heavy-ball momentum as ``optax.sgd``
and ``torch.optim.SGD`` define it), the same epochs and per-epoch data order, the
partial last batch averaged over its real examples. The methods:

- ``jaxgd``: one ``jaxgd.sweep`` of all K configs (one compiled program);
- ``jaxgd_single``: ``jaxgd.sweep`` called once per config;
- ``optax_loop``: one jitted optax step, hyperparameters as arrays in the state
  (compiled once), a Python loop over configs, epochs and batches;
- ``torch_eager``: ``torch.optim.SGD`` per config, a Python loop over batches;
- ``torch_func``: a ``torch.func`` ensemble, ``stack_module_state`` +
  ``vmap(grad(functional_call))``, per-config learning rate and momentum.

Each point reports compile seconds apart, the median and spread of the run seconds over
``--repeats`` timed repeats after a warm-up, throughput, and model-FLOPs utilisation:
FLOPs per step from XLA's cost analysis of jaxgd's compiled program, divided by the
device's peak measured in the same run with a large float32 matmul.

Looped baselines whose full work would take longer than ``--budget`` seconds per repeat
time a subset (the first configs, or the first steps) and extrapolate linearly; such a
point says so (``extrapolated``, ``timed_configs``, ``timed_steps``).

Run ``python benchmarks/throughput.py --help`` or ``jaxgd bench --help``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import json
import math
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import engine
from . import problems as problem_library
from .problem import Problem
from .sweep import sweep

__all__ = ["main", "METHODS", "PROBLEMS", "make_configs", "data_orders", "matmul_peak"]

PyTree = Any
SCHEMA = "jaxgd.benchmark/1"
METHODS = ("jaxgd", "jaxgd_single", "optax_loop", "torch_eager", "torch_func")
TORCH_METHODS = ("torch_eager", "torch_func")
PROBLEMS = ("mlp", "digits_cnn", "linear_regression")

# XLA's FLOP count of each jaxgd chunk program, by (problem, batch size, configs), taken
# when the program is compiled; and how many chunk programs had been seen then.
_chunk_flops: dict[tuple[str, int, int], float | None] = {}
_chunk_compile_seconds: dict[tuple[str, int, int], float] = {}
_seen_programs = [0]


# --------------------------------------------------------------------------- workload


@dataclasses.dataclass(frozen=True)
class Workload:
    """What every method trains: problem, data (numpy), configs, epochs, seed."""

    name: str
    problem: Problem
    data: dict[str, np.ndarray]
    epochs: int
    seed: int = 0

    @property
    def num_examples(self) -> int:
        return int(self.data["y"].shape[0])


def load_problem(name: str, num_examples: int | None) -> tuple[Problem, dict[str, np.ndarray]]:
    """The named built-in problem; ``num_examples`` keeps the first N examples."""
    if name == "mlp":
        problem = problem_library.mlp((64, 256, 10))
        data = problem_library.synthetic_classification(num_examples or 4096)
    elif name == "digits_cnn":
        problem, data = problem_library.digits_cnn()
    elif name == "linear_regression":
        problem, data = problem_library.linear_regression(num_examples=num_examples or 4096)
    else:
        raise ValueError(f"--problem={name!r}: choose one of {list(PROBLEMS)}")
    available = int(data["y"].shape[0])
    if num_examples is not None:
        if not 1 <= num_examples <= available:
            raise ValueError(
                f"--num-examples={num_examples}: the {name} problem has {available} examples"
            )
        data = {key: value[:num_examples] for key, value in data.items()}
    return problem, data


def make_configs(count: int) -> list[dict[str, float]]:
    """``count`` configs from a learning-rate x momentum grid (rates outer, momenta inner).

    Rates are log-spaced in [1e-3, 3e-2], momenta linear in [0, 0.9]: the largest
    effective rate lr/(1-m) = 0.3 trains every built-in problem without diverging, so
    every method runs the same finite arithmetic.
    """
    if count < 1:
        raise ValueError(f"configs={count}: must be a positive integer")
    rates_count = math.ceil(math.sqrt(count))
    momenta_count = math.ceil(count / rates_count)
    rates = np.geomspace(1e-3, 3e-2, rates_count) if rates_count > 1 else np.array([1e-2])
    momenta = np.linspace(0.0, 0.9, momenta_count) if momenta_count > 1 else np.array([0.9])
    grid = [{"learning_rate": float(lr), "momentum": float(m)} for lr in rates for m in momenta]
    return grid[:count]


def initial_params(problem: Problem, seed: int) -> PyTree:
    """The parameters jaxgd starts a config of this seed from (same key derivation as the
    engine: ``init_key, shuffle_key = split(key(seed))``)."""
    init_key, _ = jax.random.split(jax.random.key(seed))
    return jax.tree.map(np.asarray, problem.init(init_key))


def data_orders(seed: int, epochs: int, num_examples: int) -> np.ndarray:
    """``[epochs, N]``: the order in which jaxgd visits the examples in each epoch,
    ``permutation(fold_in(shuffle_key, epoch))``; the baselines follow it exactly."""
    _, shuffle_key = jax.random.split(jax.random.key(seed))
    orders = [
        jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), num_examples)
        for epoch in range(epochs)
    ]
    return np.asarray(jnp.stack(orders)).astype(np.int64)


def batch_rows(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """An epoch's order cut into batches; the last one may be partial."""
    return [order[start : start + batch_size] for start in range(0, order.size, batch_size)]


# --------------------------------------------------------------------------- methods


@dataclasses.dataclass
class Outcome:
    """One timed call: wall seconds for the work done, and final epoch losses when the
    whole work was done (the last epoch's mean training loss per config)."""

    seconds: float
    final_losses: list[float] | None = None
    compile_seconds: float = 0.0
    engine_seconds: float | None = None


@dataclasses.dataclass(frozen=True)
class Work:
    """How much of a point's work one call does: the first ``configs`` configs, and at
    most ``steps`` steps of each (None: all)."""

    configs: int
    steps: int | None = None


class Method:
    """A way to train K configs. ``prepare`` once per point, then ``run(work)``."""

    name = "method"
    # "configs": time a subset of configs; "steps": a prefix of the steps; None: all.
    truncate_by: str | None = None

    def __init__(self, workload: Workload, configs: list[dict[str, float]], batch_size: int):
        self.workload = workload
        self.configs = configs
        self.batch_size = batch_size
        self.steps_per_epoch = math.ceil(workload.num_examples / batch_size)
        self.total_steps = self.steps_per_epoch * workload.epochs
        self.orders = data_orders(workload.seed, workload.epochs, workload.num_examples)

    def prepare(self) -> float:
        """Build and compile what the runs need; returns compile seconds."""
        return 0.0

    def run(self, work: Work) -> Outcome:
        raise NotImplementedError


class JaxgdSweep(Method):
    """All K configs in one ``jaxgd.sweep``: one compiled program."""

    name = "jaxgd"

    def prepare(self) -> float:
        self.device_data = {k: jax.device_put(v) for k, v in self.workload.data.items()}
        example = {k: v[0] for k, v in self.workload.data.items()}
        self.footprint = engine.footprint(self.workload.problem, example)
        return 0.0

    def _note_program(self, count: int, compile_seconds: float) -> None:
        """Keep the FLOPs of a chunk program the moment it is compiled (the engine's cache
        does not say which program is which, but the newest one is the one just built)."""
        programs = engine.compiled_programs("chunk")
        if len(programs) > _seen_programs[0]:
            _seen_programs[0] = len(programs)
            key = (self.workload.name, self.batch_size, count)
            flops = _flops(programs[-1])
            # On the CPU large batches run the configs in blocks (lax.map), a loop whose
            # body XLA's cost analysis counts once: scale by the number of blocks (the
            # gather outside the loop is then over-counted, by well under 1%).
            block = engine.default_config_block(
                self.batch_size, count, jax.default_backend(), self.footprint
            )
            if flops is not None and block is not None:
                flops *= math.ceil(count / block)
            _chunk_flops[key] = flops
            _chunk_compile_seconds[key] = compile_seconds

    def _sweep(self, configs):
        return sweep(
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
        self._note_program(work.configs, float(result.compile_seconds[0]))
        return Outcome(
            seconds,
            [float(x) for x in result.history["train_loss"][:, -1]],
            compile_seconds=float(result.compile_seconds[0]),
            engine_seconds=float(result.seconds[0]),
        )


class JaxgdSingle(JaxgdSweep):
    """``jaxgd.sweep`` once per config (one program, compiled on the first call)."""

    name = "jaxgd_single"
    truncate_by = "configs"

    def run(self, work: Work) -> Outcome:
        losses, compile_seconds, engine_seconds = [], 0.0, 0.0
        start = time.perf_counter()
        for config in self.configs[: work.configs]:
            result = self._sweep([config])
            self._note_program(1, float(result.compile_seconds[0]))
            losses.append(float(result.history["train_loss"][0, -1]))
            compile_seconds += float(result.compile_seconds[0])
            engine_seconds += float(result.seconds[0])
        seconds = time.perf_counter() - start
        return Outcome(seconds, losses, compile_seconds, engine_seconds)


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


# ----------------------------------------------------------------- PyTorch baselines


def torch_model(problem_name: str, params: PyTree):
    """A ``torch.nn.Module`` computing what the jaxgd problem computes, from its params."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    def tensor(array):
        return torch.tensor(np.array(array, np.float32))

    if problem_name == "mlp":
        layers: list[nn.Module] = []
        for index, layer in enumerate(params):
            linear = nn.Linear(*np.shape(layer["w"]))
            with torch.no_grad():
                linear.weight.copy_(tensor(layer["w"]).T)
                linear.bias.copy_(tensor(layer["b"]))
            layers.append(linear)
            if index < len(params) - 1:
                layers.append(nn.ReLU())
        return nn.Sequential(*layers)

    if problem_name == "digits_cnn":

        class DigitsCNN(nn.Module):
            def __init__(self):
                super().__init__()
                # JAX's HWIO kernels as torch's OIHW.
                self.conv1 = nn.Parameter(tensor(params["conv1"]).permute(3, 2, 0, 1))
                self.bias1 = nn.Parameter(tensor(params["bias1"]))
                self.conv2 = nn.Parameter(tensor(params["conv2"]).permute(3, 2, 0, 1))
                self.bias2 = nn.Parameter(tensor(params["bias2"]))
                self.dense_w = nn.Parameter(tensor(params["dense"]["w"]))
                self.dense_b = nn.Parameter(tensor(params["dense"]["b"]))

            def forward(self, x):
                h = F.relu(F.conv2d(x.reshape(-1, 1, 8, 8), self.conv1, self.bias1, padding=1))
                # XLA's SAME padding for stride 2 on 8x8 pads 0 before and 1 after.
                h = F.relu(F.conv2d(F.pad(h, (0, 1, 0, 1)), self.conv2, self.bias2, stride=2))
                h = h.permute(0, 2, 3, 1).reshape(h.shape[0], -1)  # NHWC flattening order
                return h @ self.dense_w + self.dense_b

        return DigitsCNN()

    if problem_name == "linear_regression":

        class Line(nn.Module):
            def __init__(self):
                super().__init__()
                self.w = nn.Parameter(tensor(params["w"]))
                self.b = nn.Parameter(tensor(params["b"]))

            def forward(self, x):
                return x @ self.w + self.b

        return Line()
    raise ValueError(f"no PyTorch model for problem {problem_name!r}")


def torch_loss(problem_name: str):
    """The batch-mean loss matching the jaxgd problem's per-example loss."""
    import torch.nn.functional as F

    if problem_name == "linear_regression":
        return F.mse_loss
    return F.cross_entropy


class TorchMethod(Method):
    def prepare(self) -> float:
        import torch

        self.torch = torch
        self.device = (
            "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"
        )
        self.params = initial_params(self.workload.problem, self.workload.seed)
        data = self.workload.data
        self.x = torch.tensor(data["x"], device=self.device)
        label_type = torch.float32 if self.workload.name == "linear_regression" else torch.int64
        self.y = torch.tensor(data["y"], dtype=label_type, device=self.device)
        self.batches = [
            [torch.tensor(rows, device=self.device) for rows in batch_rows(order, self.batch_size)]
            for order in self.orders
        ]
        self.loss_fn = torch_loss(self.workload.name)
        return 0.0

    def synchronize(self):
        if self.device == "cuda":
            self.torch.cuda.synchronize()


class TorchEager(TorchMethod):
    """``torch.optim.SGD`` per config, eager forward/backward per batch."""

    name = "torch_eager"
    truncate_by = "configs"

    def run(self, work: Work) -> Outcome:
        torch, losses = self.torch, []
        self.synchronize()
        start = time.perf_counter()
        for config in self.configs[: work.configs]:
            model = torch_model(self.workload.name, self.params).to(self.device)
            opt = torch.optim.SGD(
                model.parameters(), lr=config["learning_rate"], momentum=config["momentum"]
            )
            for epoch_batches in self.batches:
                total = torch.zeros((), device=self.device)
                for rows in epoch_batches:
                    opt.zero_grad(set_to_none=True)
                    loss = self.loss_fn(model(self.x[rows]), self.y[rows])
                    loss.backward()
                    opt.step()
                    total += loss.detach() * rows.numel()
            losses.append(float(total) / self.workload.num_examples)
        self.synchronize()
        return Outcome(time.perf_counter() - start, losses)


class TorchFunc(TorchMethod):
    """A ``torch.func`` ensemble: K stacked models, ``vmap(grad_and_value(...))`` over
    them, heavy-ball SGD on the stacked tensors with per-config lr and momentum."""

    name = "torch_func"
    truncate_by = "steps"

    def prepare(self) -> float:
        super().prepare()
        torch = self.torch
        from torch.func import functional_call, grad_and_value, vmap

        template = torch_model(self.workload.name, self.params).to("meta")
        loss_fn = self.loss_fn

        def batch_loss(params, x, y):
            return loss_fn(functional_call(template, params, (x,)), y)

        self.grad_fn = vmap(grad_and_value(batch_loss), in_dims=(0, None, None))
        self.rates = torch.tensor([c["learning_rate"] for c in self.configs], device=self.device)
        self.momenta = torch.tensor([c["momentum"] for c in self.configs], device=self.device)
        return 0.0

    def run(self, work: Work) -> Outcome:
        torch = self.torch
        from torch.func import stack_module_state

        count = work.configs
        steps_left = self.total_steps if work.steps is None else work.steps
        self.synchronize()
        start = time.perf_counter()
        models = [torch_model(self.workload.name, self.params).to(self.device)] * count
        stacked, _ = stack_module_state(models)
        params = {name: value.detach() for name, value in stacked.items()}
        buffers = {name: torch.zeros_like(value) for name, value in params.items()}

        def per_config(values, like):
            return values[:count].reshape((count,) + (1,) * (like.dim() - 1))

        rates = {name: per_config(self.rates, p) for name, p in params.items()}
        momenta = {name: per_config(self.momenta, p) for name, p in params.items()}
        total = None
        for epoch_batches in self.batches:
            total = torch.zeros(count, device=self.device)
            for rows in epoch_batches:
                if steps_left == 0:
                    break
                steps_left -= 1
                grads, loss = self.grad_fn(params, self.x[rows], self.y[rows])
                with torch.no_grad():
                    for name, p in params.items():
                        # Heavy ball as torch.optim.SGD: b <- m b + g, p <- p - lr b.
                        buffers[name].mul_(momenta[name]).add_(grads[name])
                        p.sub_(rates[name] * buffers[name])
                total += loss * rows.numel()
        self.synchronize()
        seconds = time.perf_counter() - start
        finished = work.steps is None or work.steps >= self.total_steps
        losses = (total / self.workload.num_examples).tolist() if finished else None
        return Outcome(seconds, losses)


METHOD_CLASSES: dict[str, type[Method]] = {
    cls.name: cls for cls in (JaxgdSweep, JaxgdSingle, OptaxLoop, TorchEager, TorchFunc)
}


# --------------------------------------------------------------------------- measuring


def _scan_body_counted_once() -> bool:
    """Whether XLA's cost analysis counts a loop body once (not times its trip count)."""
    matrix = jnp.ones((32, 32), jnp.float32)

    def loop(x):
        return jax.lax.scan(lambda c, _: (c @ c, None), x, None, length=10)[0]

    flops = _flops(jax.jit(loop).lower(matrix).compile())
    return flops is not None and flops < 5 * 2 * 32**3


def _flops(executable) -> float | None:
    analysis = executable.cost_analysis()
    if isinstance(analysis, list):
        analysis = analysis[0] if analysis else None
    if not analysis or "flops" not in analysis:
        return None
    return float(analysis["flops"])


def matmul_peak(sizes: tuple[int, ...] = (512, 1024, 2048), repeats: int = 10) -> dict[str, Any]:
    """The device's float32 matmul rate: the best of ``repeats`` timed square matmuls of
    each size (the best, because the peak is what the device can do when nothing else
    runs; other processes only slow it down)."""
    by_size = {}
    for size in sizes:
        key_a, key_b = jax.random.split(jax.random.key(size))
        a = jax.random.normal(key_a, (size, size), jnp.float32)
        b = jax.random.normal(key_b, (size, size), jnp.float32)
        matmul = jax.jit(jnp.matmul).lower(a, b).compile()
        matmul(a, b).block_until_ready()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            matmul(a, b).block_until_ready()
            times.append(time.perf_counter() - start)
        flops = 2.0 * size**3
        by_size[str(size)] = {
            "best_flops_per_second": flops / min(times),
            "median_flops_per_second": flops / statistics.median(times),
        }
    best = max(by_size, key=lambda size: by_size[size]["best_flops_per_second"])
    return {
        "flops_per_second": by_size[best]["best_flops_per_second"],
        "size": int(best),
        "by_size": by_size,
    }


def device_info() -> dict[str, Any]:
    device = jax.devices()[0]
    cpu_model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "platform": device.platform,
        "device_kind": device.device_kind,
        "device_count": jax.device_count(),
        "cpu_model": cpu_model,
        "cpu_cores": os.cpu_count(),
        "jax_version": jax.__version__,
        "jaxlib_version": jax.lib.__version__ if hasattr(jax.lib, "__version__") else None,
        "optax_version": optax.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "torch_version": None,
        "torch_threads": None,
    }
    try:
        import torch

        info["torch_version"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if device.platform == "gpu" and torch.cuda.is_available():
            info["torch_device"] = torch.cuda.get_device_name()
    except ImportError:
        pass
    return info


def _peak_device_memory() -> int | None:
    stats = jax.devices()[0].memory_stats()
    if not stats:
        return None
    return stats.get("peak_bytes_in_use")


def _plan_work(method: Method, count: int, budget: float) -> tuple[Work, float, float]:
    """Warm up, then choose how much of the work one timed call does.

    Returns the work, the factor from its time to the full work's, and the seconds the
    warm-up spent compiling (jaxgd reports them apart from its run time)."""
    full = Work(count)
    if method.truncate_by is None:
        warmup = method.run(full)  # compiles jaxgd's program; its compile time is apart
        return full, 1.0, warmup.compile_seconds
    if method.truncate_by == "configs":
        small = Work(1)
        warmup = method.run(small)
        estimate = method.run(small).seconds * count
        if estimate <= budget:
            return full, 1.0, warmup.compile_seconds
        configs = max(1, min(count, int(budget / estimate * count)))
        return Work(configs), count / configs, warmup.compile_seconds
    small_steps = min(method.total_steps, 20)
    warmup = method.run(Work(count, small_steps))
    estimate = method.run(Work(count, small_steps)).seconds * method.total_steps / small_steps
    if estimate <= budget:
        return full, 1.0, warmup.compile_seconds
    steps = max(small_steps, min(method.total_steps, int(budget / estimate * method.total_steps)))
    return Work(count, steps), method.total_steps / steps, warmup.compile_seconds


def measure_point(
    workload: Workload,
    method_name: str,
    batch_size: int,
    count: int,
    repeats: int,
    budget: float,
) -> dict[str, Any]:
    """Time one method at one (batch size, configs) point."""
    configs = make_configs(count)
    method = METHOD_CLASSES[method_name](workload, configs, batch_size)
    compile_seconds = method.prepare()
    first_call = time.perf_counter()
    work, scale, warmup_compile = _plan_work(method, count, budget)
    compile_seconds += warmup_compile
    warmup_seconds = time.perf_counter() - first_call
    outcomes = [method.run(work) for _ in range(repeats)]
    if method_name in ("jaxgd", "jaxgd_single"):
        compiled_in_timed_calls = sum(o.compile_seconds for o in outcomes)
        if compiled_in_timed_calls:
            raise RuntimeError(f"{method_name} recompiled during timed calls")
    seconds = sorted(o.seconds * scale for o in outcomes)
    median = statistics.median(seconds)
    quartiles = np.percentile(seconds, [25, 75])
    examples = workload.epochs * workload.num_examples
    point = {
        "method": method_name,
        "batch_size": batch_size,
        "configs": count,
        "epochs": workload.epochs,
        "steps_per_config": method.total_steps,
        "compile_seconds": compile_seconds,
        "warmup_seconds": warmup_seconds,
        "run_seconds_median": median,
        "run_seconds_min": seconds[0],
        "run_seconds_max": seconds[-1],
        "run_seconds_iqr": float(quartiles[1] - quartiles[0]),
        "run_seconds": seconds,
        "relative_spread": (seconds[-1] - seconds[0]) / median,
        "extrapolated": scale != 1.0,
        "timed_configs": work.configs,
        "timed_steps": method.total_steps if work.steps is None else work.steps,
        "steps_per_second": method.total_steps / median,
        "examples_per_second_per_config": examples / median,
        "config_examples_per_second": count * examples / median,
        "peak_device_memory_bytes": _peak_device_memory(),
        "final_train_loss": outcomes[-1].final_losses if scale == 1.0 else None,
    }
    if method_name == "jaxgd":
        point["engine_run_seconds_median"] = statistics.median(o.engine_seconds for o in outcomes)
    return point


def _jaxgd_flops(point: dict[str, Any], workload: Workload, counted_once: bool) -> None:
    """FLOPs per step of jaxgd's program for this point, from XLA's cost analysis, and its
    compile seconds when another method of this run compiled it first (the same program
    serves ``jaxgd`` at K=1 and ``jaxgd_single``)."""
    key = (workload.name, point["batch_size"], point["configs"])
    if point["compile_seconds"] == 0.0 and key in _chunk_compile_seconds:
        point["compile_seconds"] = _chunk_compile_seconds[key]
    flops = _chunk_flops.get(key)
    steps_per_epoch = math.ceil(workload.num_examples / point["batch_size"])
    if flops is not None and not counted_once:
        flops /= steps_per_epoch  # the count covers the whole epoch's loop
    point["flops_per_step"] = flops


# --------------------------------------------------------------------------- running


DEFAULTS = {
    "num_examples": None,  # the problem's: 4096, digits 1797
    "batch_sizes": None,  # 1, 2, 4, ... up to 4096 and the dataset size
    "sweep_configs": 64,
    "configs": [1, 4, 16, 64, 256],
    "configs_batch_size": 128,
    "repeats": 5,
    "budget": 2.0,
}
QUICK = {
    "num_examples": 200,
    "batch_sizes": [16, 200],
    "sweep_configs": 4,
    "configs": [4],
    "configs_batch_size": 16,
    "repeats": 1,
    "budget": math.inf,  # always the whole work, so every method's final losses exist
}


def _parse_ints(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: expected integers like 1,4,16") from error
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive integers like 1,4,16")
    return values


def _parse_methods(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = sorted(set(names) - set(METHODS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"{text!r}: methods are {','.join(METHODS)}")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxgd bench",
        description="Training throughput vs batch size and vs number of configs: jaxgd side "
        "by side with an optax loop, PyTorch eager and a torch.func ensemble.",
    )
    parser.add_argument("--problem", choices=PROBLEMS, default="mlp")
    parser.add_argument(
        "--num-examples",
        type=int,
        default=None,
        help="training examples (default: 4096; digits: all 1797)",
    )
    parser.add_argument(
        "--batch-sizes",
        type=_parse_ints,
        default=None,
        help="batch sizes of the batch-size sweep (default: 1,2,4,...,"
        "up to 4096 and the dataset size)",
    )
    parser.add_argument(
        "--sweep-configs", type=int, default=None, help="K of the batch-size sweep (default 64)"
    )
    parser.add_argument(
        "--configs",
        type=_parse_ints,
        default=None,
        help="K values of the configs sweep (default 1,4,16,64,256)",
    )
    parser.add_argument(
        "--configs-batch-size",
        type=int,
        default=None,
        help="batch size of the configs sweep (default 128)",
    )
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed repeats after warm-up (default 5)"
    )
    parser.add_argument(
        "--methods",
        type=_parse_methods,
        default=list(METHODS),
        help=f"comma-separated subset of {','.join(METHODS)}",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds per timed call above which looped baselines time part "
        "of the work and extrapolate (default 2)",
    )
    parser.add_argument("--out", default="runs/benchmark", help="output folder")
    parser.add_argument("--no-plots", action="store_true", help="write the JSON only")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a tiny run for smoke tests: 200 examples, B in {16, 200}, K=4, 1 repeat",
    )
    return parser


def _methods_available(methods: list[str], log) -> tuple[list[str], dict[str, str]]:
    """The methods that can run here, and why the others are skipped (no PyTorch)."""
    wanted_torch = [m for m in methods if m in TORCH_METHODS]
    if not wanted_torch:
        return methods, {}
    try:
        import torch  # noqa: F401
    except ImportError:
        message = "PyTorch is not installed (pip install 'jaxgd[bench]')"
        log(f"skipping {', '.join(wanted_torch)}: {message}")
        return [m for m in methods if m not in wanted_torch], dict.fromkeys(wanted_torch, message)
    _torch_first_call()
    return methods, {}


def _torch_first_call() -> None:
    """PyTorch's one-off start-up (about 2 s on the first backward) kept out of every point."""
    import torch

    weight = torch.ones(4, 4, requires_grad=True)
    (weight @ weight).sum().backward()


def run_benchmark(args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    # Unset options take the defaults, or the tiny sizes of --quick.
    defaults = QUICK if args.quick else DEFAULTS
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    problem, data = load_problem(args.problem, args.num_examples)
    workload = Workload(args.problem, problem, data, args.epochs)
    n = workload.num_examples
    batch_sizes = args.batch_sizes or [2**i for i in range(13) if 2**i <= n]
    for size in [*batch_sizes, args.configs_batch_size]:
        if not 1 <= size <= n:
            raise ValueError(f"batch size {size}: must lie in [1, {n}] (the training examples)")
    if args.epochs < 1 or args.repeats < 1 or args.sweep_configs < 1:
        raise ValueError("--epochs, --repeats and --sweep-configs must be positive")
    methods, skipped = _methods_available(args.methods, log)

    log(f"device: {jax.devices()[0]}; measuring the float32 matmul peak")
    peak_sizes = (256,) if args.quick else (512, 1024, 2048)
    peak_before = matmul_peak(peak_sizes)
    counted_once = _scan_body_counted_once()
    log(f"peak {peak_before['flops_per_second'] / 1e9:.1f} GFLOP/s")

    wanted = [("batch_size", size, args.sweep_configs) for size in batch_sizes]
    wanted += [("configs", args.configs_batch_size, k) for k in args.configs]
    points: list[dict[str, Any]] = []
    measured: dict[tuple[str, int, int], dict[str, Any]] = {}
    for sweep_name, size, count in wanted:
        for method in methods:
            key = (method, size, count)
            if key not in measured:
                point = measure_point(workload, method, size, count, args.repeats, args.budget)
                if method == "jaxgd":
                    _jaxgd_flops(point, workload, counted_once)
                measured[key] = point
                log(
                    f"{method:>12} B={size:<5} K={count:<4} "
                    f"run {point['run_seconds_median']:8.3f}s"
                    f"{' (extrapolated)' if point['extrapolated'] else ''}  "
                    f"compile {point['compile_seconds']:.2f}s  "
                    f"{point['config_examples_per_second']:.3g} config-examples/s"
                )
            points.append({"sweep": sweep_name, **measured[key]})
    # Measured before and after the points; the better one is the device's peak.
    peak_after = matmul_peak(peak_sizes)
    peak = {
        "flops_per_second": max(p["flops_per_second"] for p in (peak_before, peak_after)),
        "before": peak_before,
        "after": peak_after,
    }
    log(f"peak after the points {peak_after['flops_per_second'] / 1e9:.1f} GFLOP/s")
    _add_utilisation(points, peak["flops_per_second"])
    return {
        "schema": SCHEMA,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "jaxgd bench " + " ".join(sys.argv[1:] if args.argv is None else args.argv),
        "device": device_info(),
        "dtype": str(jnp.result_type(float)),
        "problem": {
            "name": args.problem,
            "model": problem.name,
            "num_examples": n,
            "parameters": int(
                sum(np.size(leaf) for leaf in jax.tree.leaves(initial_params(problem, 0)))
            ),
        },
        "epochs": args.epochs,
        "repeats": args.repeats,
        "budget_seconds": args.budget if math.isfinite(args.budget) else None,
        "methods": methods,
        "skipped": skipped,
        "peak": peak,
        "xla_counts_loop_body_once": counted_once,
        "host_max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "points": points,
        "goals": goal_ratios(points, args.sweep_configs),
    }


def _add_utilisation(points: list[dict[str, Any]], peak: float) -> None:
    """Every method at a point does jaxgd's work: its FLOPs, its utilisation."""
    flops = {
        (p["batch_size"], p["configs"]): p["flops_per_step"]
        for p in points
        if p["method"] == "jaxgd" and p.get("flops_per_step")
    }
    for point in points:
        per_step = flops.get((point["batch_size"], point["configs"]))
        point["flops_per_step"] = per_step
        if per_step is None:
            point["achieved_flops_per_second"] = point["mfu"] = None
            continue
        achieved = per_step * point["steps_per_config"] / point["run_seconds_median"]
        point["achieved_flops_per_second"] = achieved
        point["mfu"] = achieved / peak


def goal_ratios(points: list[dict[str, Any]], count: int) -> dict[str, Any]:
    """How many times faster jaxgd is than each baseline, per batch size, at K=count:
    from the medians, and from the fastest repeats (other processes only add time, so
    the minimum is the least disturbed estimate on a shared machine)."""
    by = {(p["method"], p["batch_size"]): p for p in points if p["configs"] == count}
    ratios: dict[str, dict[str, float]] = {}
    ratios_min: dict[str, dict[str, float]] = {}
    for (method, size), point in sorted(by.items(), key=lambda kv: kv[0][1]):
        reference = by.get(("jaxgd", size))
        if method == "jaxgd" or reference is None:
            continue
        ratios.setdefault(method, {})[str(size)] = (
            point["run_seconds_median"] / reference["run_seconds_median"]
        )
        ratios_min.setdefault(method, {})[str(size)] = (
            point["run_seconds_min"] / reference["run_seconds_min"]
        )
    mfu = {
        f"B={p['batch_size']},K={p['configs']}": p["mfu"]
        for p in sorted(points, key=lambda p: (p["configs"], p["batch_size"]))
        if p["method"] == "jaxgd" and p["mfu"] is not None
    }
    return {
        "configs": count,
        "speedup_over": ratios,
        "speedup_over_from_min": ratios_min,
        "jaxgd_mfu": mfu,
    }


def write_plots(result: dict[str, Any], out: str) -> list[str]:
    """Throughput vs batch size (log-log) and vs K, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    device = result["device"]
    hardware = device["cpu_model"] if device["platform"] == "cpu" else device["device_kind"]
    title = f"{result['problem']['model']} on {hardware}"
    for sweep_name, axis, label in (
        ("batch_size", "batch_size", "batch size B"),
        ("configs", "configs", "configs K"),
    ):
        points = [p for p in result["points"] if p["sweep"] == sweep_name]
        if not points:
            continue
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
        for method in result["methods"]:
            mine = sorted((p for p in points if p["method"] == method), key=lambda p: p[axis])
            if not mine:
                continue
            xs = [p[axis] for p in mine]
            left.plot(xs, [p["config_examples_per_second"] for p in mine], "o-", label=method)
            right.plot(xs, [p["steps_per_second"] for p in mine], "o-", label=method)
        fixed = points[0]["configs"] if sweep_name == "batch_size" else points[0]["batch_size"]
        fixed_name = "K" if sweep_name == "batch_size" else "B"
        for ax, ylabel in (
            (left, "config-examples / s (all configs)"),
            (right, "steps / s per config"),
        ):
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel(label)
            ax.set_ylabel(ylabel)
            ax.grid(True, which="both", alpha=0.3)
        left.legend(fontsize=8)
        fig.suptitle(f"{title}, {fixed_name}={fixed}, {result['epochs']} epochs", fontsize=10)
        fig.tight_layout()
        path = os.path.join(out, f"{result['problem']['name']}_vs_{sweep_name}.png")
        fig.savefig(path, dpi=80)
        plt.close(fig)
        paths.append(path)
    return paths


def results_table(result: dict[str, Any]) -> str:
    """Markdown tables: median run seconds per method (x: extrapolated), jaxgd's speed-up
    over each, jaxgd's compile seconds and MFU."""
    lines = []
    methods = result["methods"]
    for sweep_name, axis in (("batch_size", "B"), ("configs", "K")):
        points = [p for p in result["points"] if p["sweep"] == sweep_name]
        if not points:
            continue
        fixed = f"K={points[0]['configs']}" if axis == "B" else f"B={points[0]['batch_size']}"
        lines += [
            f"Run seconds (median of {result['repeats']}; * = extrapolated), {fixed}, "
            f"{result['epochs']} epochs of {result['problem']['num_examples']} examples; "
            "in brackets: that method's time / jaxgd's.",
            "",
            "| " + axis + " | " + " | ".join(methods) + " | jaxgd compile s | jaxgd MFU |",
            "|---:" * (len(methods) + 3) + "|",
        ]
        for value in sorted({p[axis == "B" and "batch_size" or "configs"] for p in points}):
            key = "batch_size" if axis == "B" else "configs"
            row = {p["method"]: p for p in points if p[key] == value}
            jaxgd_point = row.get("jaxgd")
            cells = []
            for method in methods:
                point = row.get(method)
                if point is None:
                    cells.append("")
                    continue
                text = f"{point['run_seconds_median']:.3g}" + ("*" if point["extrapolated"] else "")
                if jaxgd_point is not None and method != "jaxgd":
                    ratio = point["run_seconds_median"] / jaxgd_point["run_seconds_median"]
                    text += f" ({ratio:.1f}x)"
                cells.append(text)
            compile_text = mfu_text = ""
            if jaxgd_point is not None:
                compile_text = f"{jaxgd_point['compile_seconds']:.2f}"
                if jaxgd_point["mfu"] is not None:
                    mfu_text = f"{jaxgd_point['mfu']:.0%}"
            lines.append(f"| {value} | " + " | ".join(cells) + f" | {compile_text} | {mfu_text} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``jaxgd bench``: run the benchmark, write ``results.json`` and plots to ``--out``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        result = run_benchmark(args, log)
    except ValueError as error:
        parser.error(str(error))
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"{args.problem}.json")
    temporary = path + ".tmp"
    with open(temporary, "w") as file:
        json.dump(result, file, indent=1)
    os.replace(temporary, path)
    log(f"wrote {path}")
    if not args.no_plots:
        try:
            for plot in write_plots(result, args.out):
                log(f"wrote {plot}")
        except ImportError:
            log("matplotlib is not installed: no plots (pip install 'jaxgd[plot]')")
    _print_goals(result, log)
    print(results_table(result))
    return 0


def _print_goals(result: dict[str, Any], log) -> None:
    goals = result["goals"]
    for method, ratios in goals["speedup_over"].items():
        text = " ".join(f"B={b}:{r:.1f}x" for b, r in ratios.items())
        log(f"jaxgd vs {method} (K={goals['configs']}): {text}")
    if goals["jaxgd_mfu"]:
        text = " ".join(f"{point}:{m:.0%}" for point, m in goals["jaxgd_mfu"].items())
        log(f"jaxgd MFU: {text}")


if __name__ == "__main__":
    raise SystemExit(main())
