"""python evaluate/results.py {run,report,list}."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from tunelab.errors import ConfigError

from .plan import (PLAN, PROJECT_ROOT, RECORDS_DIR, RESULTS_MD, load_comparisons, load_generate, load_plan,
                   load_students)
from .report import report
from .runner import run


DESCRIPTION = ("Result runs: the classification recipes trained and scored on real data, and RESULTS.md written "
               "from their run records (never by hand).")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="evaluate/results.py", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="train and score the plan's tasks (finished runs are skipped)")
    run_p.add_argument("--only", nargs="+", help="task or generate run names (default: all)")
    run_p.add_argument("--methods", nargs="+",
                       help="methods or generate variants (default: every one a task or generate run lists)")
    run_p.add_argument("--rerun", action="store_true",
                       help="train and score finished runs again, replacing them (after a config change: a finished "
                            "run is not compared with its config); a task's prepared data is kept")
    run_p.add_argument("--dry_run", action="store_true", help="print the commands only")
    report_p = sub.add_parser("report", help=f"write {RESULTS_MD.name} from the kept run records")
    report_p.add_argument("--records", type=Path, default=RECORDS_DIR,
                          help="the records folder (default: evaluate/records; runs/results reads the run folders)")
    sub.add_parser("list", help="the plan's tasks, methods and commands")
    parser.add_argument("--plan", type=Path, default=PLAN)
    args = parser.parse_args(argv)
    args.plan = args.plan.resolve()
    if getattr(args, "records", None):
        args.records = args.records.resolve()  # before the chdir: relative to where it was typed
    os.chdir(PROJECT_ROOT)  # the plan's run folders and the stage commands are relative to the project
    try:
        tasks = load_plan(args.plan)
        others = dict(generate_runs=load_generate(args.plan), student_runs=load_students(args.plan),
                      comparisons=load_comparisons(args.plan))
        if args.command == "run":
            results = run(tasks, args.only, args.methods, rerun=args.rerun, dry_run=args.dry_run, **others)
            return 1 if any(r["returncode"] for r in results) else 0
        if args.command == "report":
            report(tasks, root=args.records, **others)
            print(f"results: wrote {RESULTS_MD} from {args.records}")
            return 0
        for task in tasks:
            for command in task.prepare:
                print(shlex.join(command))
            for method in task.methods:
                for command in task.commands(method):
                    print(shlex.join(command))
        for generate_run in others["generate_runs"]:
            for variant in generate_run.variants:
                print("\n".join(generate_run.shell_lines(variant)))
        for student_run in others["student_runs"]:
            for command in [*student_run.prepare, *(c for v in student_run.variants for c in student_run.commands(v)),
                            student_run.score_command()]:
                print(shlex.join(command))
        for comparison in others["comparisons"]:
            for command in [*comparison.prepare, *(c for v in comparison.variants for c in comparison.commands(v))]:
                print(shlex.join(command))
        return 0
    except ConfigError as e:
        print(f"results: {e}", file=sys.stderr)
        return 2
