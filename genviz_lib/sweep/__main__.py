"""``python -m genviz_lib.sweep RECIPE --profile P --executor inline|local|ray|slurm [--jobs N] [--address A]``.

Prints a line as it starts, a line per stage of the recipe (how many jobs, how many already in the cache), a
line per finished job, a summary, and last ``digest: <sha256>`` of every result the sweep touched — the same
digest whatever the executor. Exit status 0 when every job ended well, 1 when a job failed twice (the others'
results are kept in the cache), 2 for an invalid command (nothing was submitted). ``--list`` lists the recipes.
``--compare FILE`` checks the results in the cache against a published export (the JSON beside its first table):
exit 0 when every entry present matches, 1 when one differs, 2 when none is present.
"""

from __future__ import annotations

import argparse
import ast
import sys

from ..config import results_dir
from . import RECIPES, SweepFailed, compare, make_executor, prepare


def _value(text: str):
    """A ``--set`` value as Python reads it (``3``, ``0.5``, ``(0, 0.1)``), else the text itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line's options."""
    parser = argparse.ArgumentParser(prog="python -m genviz_lib.sweep", description=__doc__.split("\n\n")[1])
    parser.add_argument("recipe", nargs="?", help="the recipe to run (--list lists them)")
    parser.add_argument("--list", action="store_true", help="list the recipes and exit")
    parser.add_argument("--compare", metavar="FILE",
                        help="compare the cache with a published export's entries (its first table's JSON) and exit")
    parser.add_argument("--profile", default="quick", help="quick, book or full (default quick)")
    parser.add_argument("--executor", default="inline", help="inline (default), local, ray or slurm")
    parser.add_argument("--jobs", type=int, default=1,
                        help="workers: processes (local), CPUs of a local Ray cluster, SLURM jobs at once")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of every job (default 1)")
    parser.add_argument("--address", help="a Ray cluster to join ('auto', 'ray://host:10001')")
    parser.add_argument("--cluster", default="slurm", help="slurm (default) or local: submitit's executor")
    parser.add_argument("--folder", help="submitit's folder for logs and pickles (on a shared file system)")
    parser.add_argument("--partition", help="the SLURM partition")
    parser.add_argument("--gpus", type=float, default=0, help="GPUs per job (Ray, SLURM)")
    parser.add_argument("--timeout-min", type=int, default=60, help="SLURM time limit of a job, in minutes")
    parser.add_argument("--cache", help="the results cache (default: GENVIZ_CACHE_DIR, else data/cache)")
    parser.add_argument("--export", nargs="?", const="", metavar="DIR",
                        help="write the recipe's table as DIR/<recipe>-<profile>.csv (default DIR: data/results)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="change a field of the recipe's settings (repeatable)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return its exit status (0 done, 1 a job failed twice, 2 an invalid command)."""
    args = parse(argv)
    if args.compare:
        try:
            found = compare(args.compare, args.cache)
        except (OSError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"{len(found['same'])} entries as published, {len(found['different'])} different, "
              f"{len(found['absent'])} not in the cache"
              + (f" ({len(found['code_changed'])} computed by this checkout's code, which differs from the code "
                 "that computed them)" if found["code_changed"] else ""))
        for label in found["different"]:
            print(f"  different: {label}")
        return 1 if found["different"] else 0 if found["same"] else 2
    if args.list:
        width = max(map(len, RECIPES))
        for name, recipe in sorted(RECIPES.items()):
            print(f"{name:<{width}}  ch. {recipe.chapter:<4} {recipe.about}")
        return 0
    try:
        if not args.recipe:
            raise ValueError("name a recipe (--list lists them)")
        overrides = {}
        for item in args.set:
            field, sep, value = item.partition("=")
            if not sep or not field:
                raise ValueError(f"--set takes FIELD=VALUE, got {item!r}")
            overrides[field] = _value(value)
        slurm = {}
        if args.executor == "slurm":
            slurm = dict(timeout_min=args.timeout_min, cpus_per_task=args.threads)
            if args.partition:
                slurm["slurm_partition"] = args.partition
        executor = make_executor(args.executor, jobs=args.jobs, address=args.address, cluster=args.cluster,
                                 folder=args.folder, gpus=args.gpus, **slurm)
        export = None if args.export is None else (args.export or results_dir())
        plan = prepare(args.recipe, args.profile, executor, threads=args.threads, overrides=overrides, export=export)
    except (ValueError, TypeError, RuntimeError) as err:
        print(f"error: {err} (nothing was submitted)", file=sys.stderr)
        return 2
    try:
        digest = plan.run(cache_root=args.cache, report=lambda line: print(line, flush=True))
    except SweepFailed as err:
        print(f"FAILED: {len(err.failures)} job(s) failed twice; every other result is in the cache", flush=True)
        for label, error in err.failures:
            print(f"  {label}: {error}", flush=True)
        return 1
    print(f"digest: {digest}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
