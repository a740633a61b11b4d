"""Start-up time of the `striate` commands, beside `python -c "import torch"` measured in the same run.

Each command runs as users run it, in a fresh process (`python -m striate ...`), against a store
and a data cache in a temporary folder:

- ``--help``, ``runs``, ``show RUN``, ``compare A B``, ``tag RUN x`` on a store holding two
  1-epoch LeNet-5 runs;
- ``models`` and ``models show lenet5``;
- ``data get`` of an already verified dataset: a synthetic dataset of Fashion-MNIST's size
  (60,000 + 10,000 28x28 images, gzipped IDX) registered in the catalog for the benchmark (the
  process is ``python -c`` that adds it to ``striate.data.catalog.DATASETS``, then runs the app),
  verified once with ``data get --from`` before the timed calls; also the same command with the
  verification record removed each time, i.e. hashing every file, for contrast;
- ``train``: a 1-epoch LeNet-5 run on 2,048 synthetic images; its overhead is the process's wall
  time minus the training and evaluation time the run records (``summary.wall_seconds``),
  and the overhead beyond importing torch subtracts the median ``import torch`` of this run.
  Also ``import torch, torch._dynamo``: torch 2.13 imports dynamo when any ``torch.optim``
  optimizer is constructed, so that is the floor under every training process.

Per command: median wall seconds and median CPU seconds (user + system of the child) over the
repetitions, commands interleaved in each repetition. On a shared machine the CPU seconds are
the steadier figure; the targets (issue 11) are wall seconds on a quiet machine. Also reports
the CPU seconds other programs used meanwhile (0 on a quiet machine).

``--baseline-src DIR``: also run each read command (``--help`` ... ``tag``) with ``PYTHONPATH=DIR``,
a ``src`` folder of another commit (``git archive COMMIT src | tar -x -C /tmp/base``), interleaved
with this tree's in every repetition; and report for both the ``python -X importtime`` total (the
sum of the top-level modules' cumulative microseconds: the import cost, without the command's own
work), median over the repetitions. ``--quick``: only ``import torch`` and the read commands.

Command: cd /work/main && .venv/bin/python benchmarks/cli_startup.py [--reps 5] [--baseline-src DIR] [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _machine import command_line, cpu_model, cpu_seconds, git_state, other_cpu_since

from striate.data.catalog import FILE_NAMES, ROLES
from striate.data.idx import read_bytes, write_idx

TARGETS = {"--help": 0.5, "runs": 0.5, "show RUN": 0.5, "compare A B": 0.5, "tag RUN x": 0.5, "models": 1.0,
           "data get (verified)": 0.5, "train overhead beyond import torch": 2.0}

DATA_GET = """
import json, sys
from striate.data import catalog
files = {role: catalog.FileSpec(name, content_sha256=sha) for role, (name, sha) in json.loads(sys.argv[1]).items()}
catalog.DATASETS["bench-synthetic"] = catalog.DatasetSpec("bench-synthetic", files, (), tuple("0123456789"))
sys.argv = ["striate", *sys.argv[2:]]
from striate.cli.app import main
main()
"""


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Wall and CPU (user + system) seconds of one child process, and what it printed."""
    before = os.times()
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd)
    wall = time.perf_counter() - start
    after = os.times()
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr}")
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return wall, cpu, done


def import_seconds(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    """Total import time of one child process: ``-X importtime``'s top-level cumulative microseconds, summed."""
    done = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], capture_output=True, text=True, env=env,
                          cwd=cwd)
    total = 0
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and not line.startswith("import time: self"):
            _, cumulative, name = line[len("import time:"):].split("|")
            if not name.startswith("  "):  # one space after the bar: a top-level import
                total += int(cumulative)
    return total / 1e6


def write_dataset(folder: Path, n_train: int, n_test: int) -> dict[str, tuple[str, str]]:
    """Gzipped IDX files of random images; role -> (file name, content SHA-256)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
              "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8)}
    files = {}
    for role in ROLES:
        path = folder / (FILE_NAMES[role] + ".gz")
        write_idx(path, arrays[role])
        files[role] = (path.name, hashlib.sha256(read_bytes(path)).hexdigest())
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--baseline-src", type=Path, help="a src folder of another commit, measured beside this one")
    parser.add_argument("--quick", action="store_true", help="only import torch and the read commands")
    args = parser.parse_args()
    python = sys.executable
    root = Path(tempfile.mkdtemp(prefix="striate-startup-"))
    env = {**os.environ, "STRIATE_CACHE": str(root / "cache"), "STRIATE_STORE": str(root / "store"),
           "COLUMNS": "80"}
    striate = [python, "-m", "striate"]

    # --- set-up: two runs, a verified dataset -------------------------------------------------
    small = write_dataset(root / "small", 2048, 512)
    del small
    big = write_dataset(root / "big", 60_000, 10_000) if not args.quick else {}
    spec = json.dumps(big)
    trains = []
    for _ in range(2):
        wall, cpu, done = timed([*striate, "train", "lenet5", "--data", str(root / "small"), "--epochs", "1",
                                 "--no-progress", "--json"], env, root)
        trains.append(json.loads(done.stdout))
    run_a, run_b = trains[0]["id"][:8], trains[1]["id"][:8]
    data_get = [python, "-c", DATA_GET, spec, "data", "get", "bench-synthetic", "--local-only"]
    if not args.quick:
        timed([python, "-c", DATA_GET, spec, "data", "get", "bench-synthetic", "--from", str(root / "big")], env,
              root)

    commands: dict[str, list[str]] = {
        "import torch": [python, "-c", "import torch"],
        # What constructing any torch.optim optimizer imports too (torch 2.13: its add_param_group is
        # wrapped by torch._disable_dynamo, which imports dynamo on first call): the floor under `train`.
        "import torch + torch._dynamo": [python, "-c", "import torch, torch._dynamo"],
        "--help": [*striate, "--help"],
        "runs": [*striate, "runs"],
        "show RUN": [*striate, "show", run_a],
        "compare A B": [*striate, "compare", run_a, run_b],
        "tag RUN x": [*striate, "tag", run_a, "x"],
        "models": [*striate, "models"],
        "models show lenet5": [*striate, "models", "show", "lenet5"],
        "data get (verified)": data_get,
        "data get (hashing every file)": data_get,
        "train (1 epoch, 2,048 images)": [*striate, "train", "lenet5", "--data", str(root / "small"), "--epochs", "1",
                                          "--no-progress", "--json"],
    }
    read = ["--help", "runs", "show RUN", "compare A B", "tag RUN x"]
    if args.quick:
        commands = {k: v for k, v in commands.items() if k == "import torch" or k in read}
    envs = {name: env for name in commands}
    if args.baseline_src:
        base_env = {**env, "PYTHONPATH": str(args.baseline_src.resolve())}
        for name in read:
            commands[f"{name} (baseline)"] = commands[name]
            envs[f"{name} (baseline)"] = base_env
    imports: dict[str, list[float]] = {k: [] for k in commands if k.split(" (")[0] in read and args.baseline_src}
    walls: dict[str, list[float]] = {k: [] for k in commands}
    cpus: dict[str, list[float]] = {k: [] for k in commands}
    overheads: list[float] = []
    noise = []
    for _ in range(args.reps):
        start = cpu_seconds()
        for name, argv in commands.items():
            if name == "data get (hashing every file)":
                (root / "cache" / "verified.json").unlink(missing_ok=True)
            wall, cpu, done = timed(argv, envs[name], root)
            walls[name].append(wall)
            cpus[name].append(cpu)
            if name.startswith("train"):
                overheads.append(wall - json.loads(done.stdout)["summary"]["wall_seconds"])
        for name in imports:
            imports[name].append(import_seconds(commands[name], envs[name], root))
        noise.append(other_cpu_since(start))

    def median(values: list[float]) -> float:
        return round(statistics.median(values), 3)

    results = {name: {"wall_s": median(walls[name]), "cpu_s": median(cpus[name])} for name in commands}
    torch_wall = results["import torch"]["wall_s"]
    for name in imports:
        results[name]["importtime_s"] = median(imports[name])
    for name in results:
        results[name]["x_import_torch"] = round(results[name]["wall_s"] / torch_wall, 3)
    if overheads:
        train_overhead = median(overheads)
        results["train overhead (wall minus recorded training + evaluation)"] = {"wall_s": train_overhead}
        results["train overhead beyond import torch"] = {"wall_s": round(train_overhead - torch_wall, 3)}
        results["train overhead beyond import torch + torch._dynamo"] = {
            "wall_s": round(train_overhead - results["import torch + torch._dynamo"]["wall_s"], 3)}
    met = {name: results[name]["wall_s"] <= limit for name, limit in TARGETS.items() if name in results}
    print(json.dumps({
        "benchmark": "cli_startup", "command": command_line(), "reps": args.reps,
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()},
        "git": git_state(), "other_cpu_s_per_rep": noise,
        "results": results, "targets_s": TARGETS, "targets_met": met,
        "wall_s_all": {k: [round(v, 3) for v in vs] for k, vs in walls.items()},
    }, indent=2))


if __name__ == "__main__":
    main()
