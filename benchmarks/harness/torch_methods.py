"""The PyTorch methods, and PyTorch ports of the built-in models.

- ``torch_eager``: ``torch.optim.SGD`` per config, a Python loop over batches;
- ``torch_func``: a ``torch.func`` ensemble, ``stack_module_state`` +
  ``vmap(grad(functional_call))``, per-config learning rate and momentum.

PyTorch is optional (``pip install 'jaxgd[bench]'``): it is imported inside the methods,
so this module imports without it.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import numpy as np

from .workload import Method, Outcome, Work, batch_rows, initial_params

__all__ = ["TorchEager", "TorchFunc", "torch_model", "torch_loss"]

PyTree = Any


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
