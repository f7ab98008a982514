"""Search at equal trained configs: TPE through the Optuna bridge, random, quasi-random and
the grid; and the bridge against Optuna's plain per-trial loop on the same trials.

The work, per problem: SGD with heavy-ball momentum, learning rate in [1e-3, 1] (log) x
momentum in [0, 0.99], seed 0, 20% of the examples held out for ``val_loss``; every method
trains ``--trials`` configs (default 128) for the same epochs at the same batch size.

- ``mlp``: the benchmark MLP problem (``benchmarks/harness/workload.py``: MLP 64-256-10 on
  4096 Gaussian-blob examples), batch 64, 5 epochs;
- ``digits``: ``jaxgd.problems.digits_mlp()`` (64-64-10 on the 8x8 digits), batch 32,
  10 epochs.

Methods, each in a FRESH process (no compiled program shared; compiles included in the
wall time; the backend is started and the data loaded before the clock):

- ``grid``: one sweep of a 16 x 8 grid (rates log-spaced, momenta linear): 128 configs;
- ``random``: one sweep of ``jaxgd.sample(128, ...)`` (loguniform x uniform);
- ``quasi_random``: one sweep of ``jaxgd.quasi_random(128, ...)`` (scrambled Halton);
- ``tpe``: ``jaxgd.optuna.optimize`` with ``TPESampler(seed=0)``, 4 rounds of 32 (no
  pruner, so every trial trains all epochs, as in the other methods);
- ``optuna_loop``: Optuna's plain loop on tpe's trials (enqueued, in order): per trial,
  one ``jax.jit`` of the whole training run (``lax.scan`` over epochs and batches of an
  ``optax.sgd`` step, the hyperparameters closed over as Python floats, so one compile per
  trial), then the validation loss; the same data order, initial parameters and masked
  partial last batch as jaxgd, so its values equal the bridge's to rounding;
- ``optuna_loop_shared``: the same loop with the hyperparameters as arguments
  (``optax.inject_hyperparams``): compiled once, then one call per trial.

    python benchmarks/search.py                  # writes runs/search/search.json
    python benchmarks/search.py --quick          # 8 trials (2 rounds of 4), 2 epochs
    python benchmarks/search.py --problems digits --repeats 3

``--repeats`` runs the methods again in rotated order, so that a shared machine's drift
hits all alike. The JSON names the device, JAX version, dtype, the load average before and
after, every worker's command line, times, compile counts and each method's best config.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

SEARCHES = ("grid", "random", "quasi_random", "tpe")
LOOPS = ("optuna_loop", "optuna_loop_shared")
METHODS = SEARCHES + LOOPS
PROBLEMS = {
    "mlp": {"batch_size": 64, "epochs": 5},
    "digits": {"batch_size": 32, "epochs": 10},
}
LR, MOMENTUM = (1e-3, 1.0), (0.0, 0.99)


def _settings(args) -> dict:
    settings = dict(PROBLEMS[args.problem])
    settings.update(trials=args.trials, batch=args.batch, validation=0.2, seed=0)
    if args.quick:
        settings.update(trials=8, batch=4, epochs=2)
    return settings


def _load(problem: str):
    import jaxgd

    if problem == "digits":
        return jaxgd.problems.digits_mlp()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from harness.workload import load_problem

    return load_problem("mlp", None)


def _space(method: str, trials: int):
    import numpy as np

    import jaxgd

    if method == "grid":
        momenta = max(1, trials // 16) if trials >= 16 else 2
        rates = max(1, trials // momenta)
        return jaxgd.grid(
            learning_rate=np.geomspace(*LR, rates), momentum=np.linspace(*MOMENTUM, momenta)
        )
    dims = dict(learning_rate=jaxgd.loguniform(*LR), momentum=jaxgd.uniform(*MOMENTUM))
    if method == "random":
        return jaxgd.sample(trials, sample_seed=0, **dims)
    return jaxgd.quasi_random(trials, 0, **dims)


def _plain_loop(problem, train, val, settings, trials, shared: bool):
    """Optuna's usual loop: objective(trial) trains one config with optax and returns its
    validation loss. Data order, initial parameters and the partial last batch as jaxgd."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    import optuna

    from jaxgd.problem import batch_loss, example_losses

    batch_size, epochs = settings["batch_size"], settings["epochs"]
    n = len(train["y"])
    steps = math.ceil(n / batch_size)
    init_key, shuffle_key = jax.random.split(jax.random.key(settings["seed"]))
    orders = np.stack(
        [
            np.asarray(jax.random.permutation(jax.random.fold_in(shuffle_key, e), n))
            for e in range(epochs)
        ]
    )
    padded = np.zeros((epochs, steps * batch_size), np.int32)
    padded[:, :n] = orders
    mask = np.arange(steps * batch_size) < n
    indices = jnp.asarray(padded.reshape(epochs, steps, batch_size))
    masks = jnp.asarray(
        np.broadcast_to(mask.reshape(steps, batch_size), (epochs, steps, batch_size))
    )
    train = jax.tree.map(jnp.asarray, train)
    val = jax.tree.map(jnp.asarray, val)
    params0 = problem.init(init_key)

    def run(tx, opt_state):
        def step(carry, batch):
            params, opt_state = carry
            index, batch_mask = batch
            examples = jax.tree.map(lambda a: a[index], train)
            grads = jax.grad(batch_loss, argnums=1)(problem.loss, params, examples, batch_mask)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        def epoch(carry, batches):
            return jax.lax.scan(step, carry, batches)[0], None

        (params, _), _ = jax.lax.scan(epoch, (params0, opt_state), (indices, masks))
        return jnp.mean(example_losses(problem.loss, params, val))

    injected = optax.inject_hyperparams(optax.sgd)

    @jax.jit
    def shared_run(learning_rate, momentum):
        with jax.numpy_dtype_promotion("standard"):
            tx = injected(learning_rate=learning_rate, momentum=momentum)
            return run(tx, tx.init(params0))

    def objective(trial):
        lr = trial.suggest_float("learning_rate", *LR, log=True)
        momentum = trial.suggest_float("momentum", *MOMENTUM)
        if shared:
            value = shared_run(jnp.float32(lr), jnp.float32(momentum))
        else:
            tx = optax.sgd(lr, momentum=momentum)
            value = jax.jit(lambda: run(tx, tx.init(params0)))()  # a new function: compiles
        return float(value)

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for params in trials:
        study.enqueue_trial(params)
    start = time.perf_counter()
    study.optimize(objective, n_trials=len(trials))
    seconds = time.perf_counter() - start
    values = [t.value if t.value is not None else float("nan") for t in study.trials]
    return seconds, values


def worker(args) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    import jaxgd

    settings = _settings(args)
    problem, data = _load(args.problem)
    jax.devices()  # start the backend before the clock: it is not what is compared
    common = dict(batch_size=settings["batch_size"], epochs=settings["epochs"], validation=0.2)
    out = {"method": args.worker, "problem": args.problem}
    if args.worker in LOOPS:
        with open(args.trials_file) as f:
            trials = json.load(f)
        train, val = jaxgd.split(data, settings["validation"], 0)
        seconds, values = _plain_loop(
            problem, train, val, settings, trials, args.worker == "optuna_loop_shared"
        )
        configs, final = trials, np.array(values, np.float64)
        out.update(seconds=seconds, compile_count=None, compile_seconds=None)
    elif args.worker == "tpe":
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        FloatDistribution = optuna.distributions.FloatDistribution
        distributions = {
            "learning_rate": FloatDistribution(*LR, log=True),
            "momentum": FloatDistribution(*MOMENTUM),
        }
        study = optuna.create_study(
            sampler=optuna.samplers.TPESampler(seed=0), pruner=optuna.pruners.NopPruner()
        )
        round_seconds = []
        last = [time.perf_counter()]

        def on_round(result):
            now = time.perf_counter()
            round_seconds.append(now - last[0])
            last[0] = now

        start = last[0]
        rounds = jaxgd.optuna.optimize(
            study,
            problem,
            data,
            distributions,
            settings["trials"],
            settings["batch"],
            fixed={"optimizer": "sgd"},
            on_round=on_round,
            **common,
        )
        seconds = time.perf_counter() - start
        configs = [dict(t.params) for t in study.trials]
        final = np.array([t.value if t.value is not None else float("nan") for t in study.trials])
        out.update(
            seconds=seconds,
            round_seconds=round_seconds,
            compile_count=jaxgd.compile_count(),
            compile_seconds=sum(r.total_compile_seconds for r in rounds),
            trial_states=[t.state.name for t in study.trials],
        )
    else:
        space = _space(args.worker, settings["trials"])
        start = time.perf_counter()
        result = jaxgd.sweep(problem, data, space=space, optimizer="sgd", **common)
        seconds = time.perf_counter() - start
        configs = [{k: c[k] for k in ("learning_rate", "momentum")} for c in result.configs]
        final = np.asarray(result.history["val_loss"], np.float64)[:, -1].copy()
        final[result.diverged] = np.nan
        out.update(
            seconds=seconds,
            compile_count=jaxgd.compile_count(),
            compile_seconds=result.total_compile_seconds,
        )
    finite = np.where(np.isfinite(final), final, np.inf)
    best = int(np.argmin(finite))
    out.update(
        configs=configs,
        final_val_loss=[None if not math.isfinite(v) else float(v) for v in final],
        trained_configs=len(configs),
        best_val_loss=float(final[best]),
        best_config=configs[best],
        dtype=str(jnp.result_type(float)),
        jax_version=jax.__version__,
    )
    return out


def _command(args, method: str, problem: str, trials_file: str | None) -> list[str]:
    command = [sys.executable, os.path.abspath(__file__), "--worker", method]
    command += ["--problem", problem, "--trials", str(args.trials), "--batch", str(args.batch)]
    command += ["--trials-file", trials_file] if trials_file else []
    return command + (["--quick"] if args.quick else [])


def _run(command: list[str]) -> dict:
    start = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{completed.stderr[-4000:]}")
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - start
    return result


def _load_average() -> list[float]:
    return list(os.getloadavg())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default="mlp,digits")
    parser.add_argument("--trials", type=int, default=128, help="trained configs per method")
    parser.add_argument("--batch", type=int, default=32, help="trials per bridge round")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="8 trials, 2 epochs, 1 round")
    parser.add_argument(
        "--methods", default=",".join(METHODS), help="a subset of " + ",".join(METHODS)
    )
    parser.add_argument("--out", default="runs/search")
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--problem", choices=sorted(PROBLEMS), help=argparse.SUPPRESS)
    parser.add_argument("--trials-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args), default=str))
        return 0
    problems = args.problems.split(",")
    unknown = sorted(set(problems) - set(PROBLEMS))
    if unknown:
        parser.error(f"--problems: {unknown} unknown; choose from {sorted(PROBLEMS)}")
    methods = args.methods.split(",")
    if sorted(set(methods) - set(METHODS)) or (set(methods) & set(LOOPS) and "tpe" not in methods):
        parser.error(f"--methods {args.methods}: choose from {METHODS}; the loops need tpe")
    searches = tuple(m for m in SEARCHES if m in methods)
    loops = tuple(m for m in LOOPS if m in methods)
    load_before = _load_average()
    document = {"benchmark": "search", "quick": args.quick, "problems": {}, "commands": {}}
    scratch = tempfile.mkdtemp(prefix="jaxgd-search-")
    for problem in problems:
        args.problem = problem
        runs = {method: [] for method in searches + loops}
        for repeat in range(args.repeats):
            shift = repeat % len(searches)
            for method in searches[shift:] + searches[:shift]:
                runs[method].append(_run(_command(args, method, problem, None)))
                print(f"{problem} {method}: {runs[method][-1]['seconds']:.2f} s", flush=True)
            trials_file = os.path.join(scratch, f"{problem}-{repeat}.json")
            if "tpe" in runs:
                with open(trials_file, "w") as f:
                    json.dump(runs["tpe"][-1]["configs"], f)
            for method in loops if repeat % 2 == 0 else loops[::-1]:
                runs[method].append(_run(_command(args, method, problem, trials_file)))
                print(f"{problem} {method}: {runs[method][-1]['seconds']:.2f} s", flush=True)
        for method in runs:
            document["commands"][f"{problem} {method}"] = " ".join(
                _command(args, method, problem, "TRIALS.json" if method in LOOPS else None)
            )
        agreement = {}
        for method in loops:
            bridge = runs["tpe"][0]["final_val_loss"]
            pairs = [
                (a, b)
                for a, b, state in zip(
                    bridge, runs[method][0]["final_val_loss"], runs["tpe"][0]["trial_states"]
                )
                if a is not None and b is not None and state == "COMPLETE"
            ]
            # Equal to rounding; a config at the edge of stability (large learning rate)
            # can amplify a rounding difference, so the count within 1e-4 is given too.
            relative = [abs(a - b) / abs(b) for a, b in pairs]
            agreement[method] = {
                "compared_trials": len(pairs),
                "within_1e-4": sum(r <= 1e-4 for r in relative),
                "median_relative_difference": statistics.median(relative) if pairs else None,
                "max_relative_difference": max(relative) if pairs else None,
            }
        summary = {
            method: {
                "trained_configs": runs[method][0]["trained_configs"],
                "median_seconds": statistics.median(r["seconds"] for r in runs[method]),
                "seconds": [r["seconds"] for r in runs[method]],
                "compile_count": runs[method][0]["compile_count"],
                "compile_seconds": runs[method][0]["compile_seconds"],
                "best_val_loss": runs[method][0]["best_val_loss"],
                "best_config": runs[method][0]["best_config"],
            }
            for method in runs
        }
        document["problems"][problem] = {
            "settings": _settings(args),
            "summary": summary,
            "loops_agree_with_bridge": agreement,
            "runs": runs,
        }
    from harness.measure import device_info

    first = next(iter(next(iter(document["problems"].values()))["runs"].values()))[0]
    document.update(
        device=device_info(),
        jax_version=first["jax_version"],
        dtype=first["dtype"],
        load_average_before=load_before,
        load_average_after=_load_average(),
    )
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "search" + ("_quick" if args.quick else "") + ".json")
    with open(path + ".tmp", "w") as f:
        json.dump(document, f, indent=1)
    os.replace(path + ".tmp", path)

    print(f"\nload average before {load_before}, after {document['load_average_after']}")
    for problem, part in document["problems"].items():
        print(f"\n{problem}: method, trained configs, wall s (compiles), best val_loss")
        for method, s in part["summary"].items():
            compiles = "" if s["compile_count"] is None else f" ({s['compile_count']} compiles)"
            print(
                f"  {method:>18}: {s['trained_configs']:4d}  {s['median_seconds']:8.2f}{compiles}"
                f"  {s['best_val_loss']:.4f}"
            )
        for method, a in part["loops_agree_with_bridge"].items():
            print(f"  {method} vs bridge: {a}")
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    raise SystemExit(main())
