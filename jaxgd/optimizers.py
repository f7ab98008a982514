"""Optimizers: optax transformations whose numeric hyperparameters live in the state.

Every numeric hyperparameter (learning rate, momentum, betas, ...) is injected with
``optax.inject_hyperparams``, so it is an array in the optimizer state: ``jax.vmap``
over a stack of states gives every config its own values, and changing a value never
recompiles. Structural choices (``nesterov``, ``centered``) are static keyword options
and key the compiled program. A learning-rate schedule is one of them
(``schedule="cosine"``): its numeric parameters (``decay_steps``, ``alpha``, ...) are
hyperparameters in the state like the others, so they sweep without recompiling.

Example:
    >>> import jax.numpy as jnp
    >>> from jaxgd import optimizer
    >>> sgd = optimizer("sgd", nesterov=False)
    >>> tx = sgd.transformation(learning_rate=0.1, momentum=0.9)
    >>> state = tx.init({"w": jnp.zeros(3)})
    >>> momentum = state.hyperparams["momentum"]  # an array in the state, vmappable
    >>> momentum.dtype, round(float(momentum), 6)
    (dtype('float32'), 0.9)
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import numbers
import re
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from .errors import InputError

__all__ = ["Optimizer", "optimizer", "OPTIMIZERS", "RANGES", "SCHEDULES", "in_interval"]


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """An optimizer family with its static options fixed.

    Attributes:
        name: a readable name ("sgd", "adam", or the factory's name).
        factory: an optax factory such as ``optax.sgd``.
        defaults: ``(name, value)`` pairs of the numeric hyperparameters that every config
            carries in its state, with the value used when a config does not set it.
            ``learning_rate`` has no default: every config must give one.
        static_options: ``(name, value)`` pairs passed to the factory unchanged.
        ranges: ``(name, interval)`` pairs, e.g. ``("b1", "[0, 1)")``: the values a config
            may give, adding to or overriding ``RANGES``; checked before anything compiles.
    """

    name: str
    factory: Callable[..., optax.GradientTransformation]
    defaults: tuple[tuple[str, float], ...]
    static_options: tuple[tuple[str, Any], ...] = ()
    ranges: tuple[tuple[str, str], ...] = ()

    def range_of(self, name: str) -> str | None:
        """The interval a hyperparameter must lie in (``"[0, 1)"``), or None if unbounded."""
        if name in SCHEDULES[self.schedule][1] and name not in dict(self.ranges):
            return SCHEDULE_RANGES[name]
        return dict(self.ranges).get(name, RANGES.get(name))

    @property
    def schedule(self) -> str:
        """The learning-rate schedule family (``SCHEDULES``), ``"constant"`` unless set."""
        return dict(self.static_options).get("schedule", "constant")

    @property
    def hyperparameter_names(self) -> tuple[str, ...]:
        names = ("learning_rate",) + tuple(name for name, _ in self.defaults)
        return names + tuple(SCHEDULES[self.schedule][1])

    def resolve(self, hyperparams: Mapping[str, float]) -> dict[str, float]:
        """Complete ``hyperparams`` with the defaults; refuse unknown or missing names."""
        unknown = sorted(set(hyperparams) - set(self.hyperparameter_names))
        if unknown:
            raise InputError(
                f"optimizer {self.name!r} got hyperparameters {unknown}; it takes "
                f"{list(self.hyperparameter_names)} (static options: "
                f"{[k for k, _ in self.static_options]} are set with jaxgd.optimizer(...))"
            )
        if "learning_rate" not in hyperparams:
            raise InputError(
                f"optimizer {self.name!r}: every config needs a learning_rate; add "
                "learning_rate=[...] to the space"
            )
        schedule_params = SCHEDULES[self.schedule][1]
        missing = [name for name, default in schedule_params.items() if default is None]
        missing = [name for name in missing if name not in hyperparams]
        if missing:
            raise InputError(
                f"optimizer {self.name!r} with schedule={self.schedule!r}: every config needs "
                f"{missing}; add them to the space (in updates, or as "
                f"{[epochs_name(name) for name in missing]} in epochs)"
            )
        defaults = {k: v for k, v in schedule_params.items() if v is not None}
        return {**dict(self.defaults), **defaults, **hyperparams}

    def transformation(self, **hyperparams: Any) -> optax.GradientTransformation:
        """The optax transformation with these hyperparameter values injected in its state."""
        values = self.resolve(hyperparams)
        static = dict(self.static_options)
        factory = self.factory
        if static.pop("schedule", "constant") != "constant":
            factory = _scheduled(factory, self.schedule, (*values, *static))
        injected = optax.inject_hyperparams(factory, static_args=tuple(static))
        return _standard_promotion(injected(**values, **static))


def _standard_promotion(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """Run ``tx`` under JAX's standard dtype promotion.

    Injected hyperparameters are float arrays rather than weakly typed Python floats, and
    optax mixes them with its int32 step count (Adam's bias correction ``b1 ** t``), which
    strict promotion refuses. Users who turn strict promotion on keep it everywhere else.
    """

    def init(params):
        with jax.numpy_dtype_promotion("standard"):
            return tx.init(params)

    def update(updates, state, params=None, **extra_args):
        with jax.numpy_dtype_promotion("standard"):
            return tx.update(updates, state, params, **extra_args)

    return optax.GradientTransformationExtraArgs(init, update)


def _scheduled(factory: Callable, schedule: str, names: tuple[str, ...]) -> Callable:
    """``factory`` whose learning rate follows ``schedule``: the schedule's parameters come
    in as keywords (injected hyperparameters, so arrays in the state) and the factory gets
    the function ``t -> η_t`` that optax counts in updates."""
    function, schedule_params = SCHEDULES[schedule]

    def scheduled(**kwargs):
        params = {name: kwargs.pop(name) for name in schedule_params}
        base = kwargs.pop("learning_rate")
        return factory(learning_rate=lambda count: function(count, base, **params), **kwargs)

    keyword = inspect.Parameter.KEYWORD_ONLY
    scheduled.__signature__ = inspect.Signature([inspect.Parameter(n, keyword) for n in names])
    return scheduled


def _constant(count, learning_rate):
    return learning_rate


def _cosine(count, learning_rate, decay_steps, alpha, exponent):
    """η_t = η ((1 - α) (½ (1 + cos(π min(t, D) / D)))^p + α): optax.cosine_decay_schedule
    (Loshchilov & Hutter 2017, arXiv:1608.03983)."""
    t = jnp.minimum(count, decay_steps)
    return learning_rate * (
        (1 - alpha) * (0.5 * (1 + jnp.cos(jnp.pi * t / decay_steps))) ** exponent + alpha
    )


def _linear(count, learning_rate, transition_steps, end_value, transition_begin):
    """η_t = (η - η_end) (1 - clip(t - t_0, 0, T) / T) + η_end: optax.linear_schedule."""
    t = jnp.clip(count - transition_begin, 0, transition_steps)
    return (learning_rate - end_value) * (1 - t / transition_steps) + end_value


def _exponential(count, learning_rate, transition_steps, decay_rate, transition_begin):
    """η_t = η r^((t - t_0) / T) after t_0, η before: optax.exponential_decay."""
    elapsed = count - transition_begin
    return jnp.where(
        elapsed <= 0, learning_rate, learning_rate * decay_rate ** (elapsed / transition_steps)
    )


def _warmup_cosine(
    count, learning_rate, warmup_steps, decay_steps, init_value, end_value, exponent
):
    """Linear from ``init_value`` to η over W updates, then cosine to ``end_value`` at D
    (D counts the warm-up): optax.warmup_cosine_decay_schedule, joined with
    optax.join_schedules (Goyal et al. 2017, arXiv:1706.02677)."""
    alpha = jnp.where(learning_rate == 0, 0.0, end_value / learning_rate)
    warmup = functools.partial(
        _linear,
        learning_rate=init_value,
        transition_steps=warmup_steps,
        end_value=learning_rate,
        transition_begin=0.0,
    )
    decay = functools.partial(
        _cosine,
        learning_rate=learning_rate,
        decay_steps=decay_steps - warmup_steps,
        alpha=alpha,
        exponent=exponent,
    )
    return optax.join_schedules([warmup, decay], [warmup_steps])(count)


# name: (η_t = function(t, learning_rate, **params), {param: default, None if required}).
# t counts the config's updates, so a schedule means the same at every batch size;
# learning_rate is the schedule's initial (peak, for warmup_cosine) value.
SCHEDULES: dict[str, tuple[Callable, dict[str, float | None]]] = {
    "constant": (_constant, {}),
    "cosine": (_cosine, {"decay_steps": None, "alpha": 0.0, "exponent": 1.0}),
    "linear": (_linear, {"transition_steps": None, "end_value": 0.0, "transition_begin": 0.0}),
    "exponential": (
        _exponential,
        {"transition_steps": None, "decay_rate": None, "transition_begin": 0.0},
    ),
    "warmup_cosine": (
        _warmup_cosine,
        {
            "warmup_steps": None,
            "decay_steps": None,
            "init_value": 0.0,
            "end_value": 0.0,
            "exponent": 1.0,
        },
    ),
}


# The schedules' parameters: counts of updates, rates and factors.
SCHEDULE_RANGES: dict[str, str] = {
    "decay_steps": "(0, inf)",
    "transition_steps": "(0, inf)",
    "warmup_steps": "[0, inf)",
    "transition_begin": "[0, inf)",
    "alpha": "[0, inf)",
    "exponent": "(0, inf)",
    "decay_rate": "(0, inf)",
    "end_value": "[0, inf)",
    "init_value": "[0, inf)",
}


def epochs_name(name: str) -> str:
    """The epochs form of a schedule parameter counted in updates: ``decay_steps`` ->
    ``decay_epochs``, ``transition_begin`` -> ``transition_begin_epochs``."""
    return name[: -len("_steps")] + "_epochs" if name.endswith("_steps") else name + "_epochs"


def step_parameters(schedule: str) -> tuple[str, ...]:
    """The parameters of ``schedule`` that count updates (and so have an epochs form)."""
    return tuple(n for n in SCHEDULES[schedule][1] if n.endswith("_steps") or n.endswith("_begin"))


def _named(name: str, factory, defaults: dict[str, float], **static: Any) -> Optimizer:
    return Optimizer(name, factory, tuple(defaults.items()), tuple(sorted(static.items())))


# Each entry: factory, numeric hyperparameters with defaults, static options with defaults.
# Momentum defaults to 0.0, a value rather than None, so that every config of a family
# has one optimizer-state structure and the whole family is one vmapped program.
OPTIMIZERS: dict[str, tuple[Callable, dict[str, float], dict[str, Any]]] = {
    "sgd": (optax.sgd, {"momentum": 0.0}, {"nesterov": False}),
    "adam": (optax.adam, {"b1": 0.9, "b2": 0.999, "eps": 1e-8}, {"nesterov": False}),
    "adamw": (
        optax.adamw,
        {"b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 1e-4},
        {"nesterov": False},
    ),
    "rmsprop": (
        optax.rmsprop,
        {"decay": 0.9, "eps": 1e-8, "momentum": 0.0},
        {"centered": False, "nesterov": False},
    ),
    "adagrad": (optax.adagrad, {"initial_accumulator_value": 0.1, "eps": 1e-7}, {}),
}


# The valid values of common hyperparameters, by name, for every family (the interval's
# brackets say whether an end is included): a momentum of 1 never forgets, b2 = 1 divides
# by zero in Adam's bias correction, eps = 0 divides by zero on a zero gradient.
RANGES: dict[str, str] = {
    "learning_rate": "(0, inf)",
    "momentum": "[0, 1)",
    "b1": "[0, 1)",
    "b2": "[0, 1)",
    "decay": "[0, 1)",
    "eps": "(0, inf)",
    "weight_decay": "[0, inf)",
    "initial_accumulator_value": "[0, inf)",
}


def in_interval(value: float, interval: str) -> bool:
    """Whether ``value`` lies in ``interval``, written ``"[low, high)"`` (``inf`` allowed);
    elementwise for a NumPy array of values.

    Example:
        >>> in_interval(0.9, "[0, 1)"), in_interval(1.0, "[0, 1)")
        (True, False)
    """
    low, high = (float(end.strip(" [()]")) for end in interval.split(","))
    above = value >= low if interval.startswith("[") else value > low
    below = value <= high if interval.endswith("]") else value < high
    return above & below


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def optimizer(
    name_or_factory: str | Callable | Optimizer,
    *,
    ranges: dict[str, str] | None = None,
    **static: Any,
) -> Optimizer:
    """Look up an optimizer family by name, or wrap any optax factory.

    Args:
        name_or_factory: one of ``"sgd"``, ``"adam"``, ``"adamw"``, ``"rmsprop"``,
            ``"adagrad"``; an optax factory such as ``optax.lion``; or an ``Optimizer``.
        ranges: valid intervals of its hyperparameters, e.g. ``{"b1": "[0, 1)"}`` (see
            ``RANGES`` for the defaults by name).
        **static: structural options, e.g. ``nesterov=True``.

    Returns:
        An ``Optimizer``. For a user factory, the numeric hyperparameters are the
        factory's keyword arguments with numeric defaults (plus ``learning_rate``).
        ``schedule=`` (any family) names a learning-rate schedule of ``SCHEDULES``.

    Example:
        >>> cosine = optimizer("adam", schedule="cosine")
        >>> cosine.hyperparameter_names[-3:]
        ('decay_steps', 'alpha', 'exponent')
    """
    if static.get("schedule", "constant") not in SCHEDULES:
        raise InputError(
            f"schedule={static['schedule']!r} is not known; choose one of {sorted(SCHEDULES)}"
        )
    if ranges:
        for name, interval in ranges.items():
            if not re.fullmatch(r"[\[(]\s*[-+.\w]+\s*,\s*[-+.\w]+\s*[\])]", str(interval)):
                raise InputError(
                    f"ranges={{{name!r}: {interval!r}}}: write an interval such as '[0, 1)' "
                    "('[' or ']' includes the end, '(' or ')' excludes it; 'inf' allowed)"
                )
        family = optimizer(name_or_factory, **static)
        return dataclasses.replace(family, ranges=family.ranges + tuple(ranges.items()))
    if isinstance(name_or_factory, Optimizer):
        if static:
            options = {**dict(name_or_factory.static_options), **static}
            return dataclasses.replace(
                name_or_factory, static_options=tuple(sorted(options.items()))
            )
        return name_or_factory
    if isinstance(name_or_factory, str):
        if name_or_factory not in OPTIMIZERS:
            raise InputError(
                f"optimizer={name_or_factory!r} is not known; choose one of "
                f"{sorted(OPTIMIZERS)} or pass an optax factory such as optax.lion"
            )
        factory, defaults, static_defaults = OPTIMIZERS[name_or_factory]
        unknown = sorted(set(static) - set(static_defaults) - {"schedule"})
        if unknown:
            raise InputError(
                f"optimizer {name_or_factory!r} has no static option {unknown}; "
                f"it has {sorted(static_defaults)}"
            )
        return _named(name_or_factory, factory, defaults, **{**static_defaults, **static})
    if callable(name_or_factory):
        signature = inspect.signature(name_or_factory)
        if "learning_rate" not in signature.parameters:
            raise InputError(
                f"{name_or_factory!r} takes no learning_rate argument: pass an optax "
                "optimizer factory such as optax.sgd or optax.lion"
            )
        defaults = {
            p.name: float(p.default)
            for p in signature.parameters.values()
            if p.name != "learning_rate" and p.name not in static and _is_number(p.default)
        }
        name = getattr(name_or_factory, "__name__", repr(name_or_factory))
        return _named(name, name_or_factory, defaults, **static)
    raise InputError(
        f"optimizer={name_or_factory!r}: expected a name, an optax factory or an Optimizer"
    )
