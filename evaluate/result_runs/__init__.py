"""Result runs: the classification recipes trained and scored on real data, and RESULTS.md written from
their run records (never by hand).

The plan (evaluate/results.yaml) lists each task: its finetune and evaluate configs, the methods
compared (full fine-tuning, LoRA) as command-line overrides, what data it uses, its headline metrics,
its target and what the original studies reported. `run` executes each (task, method) as the two
commands a user would type, skipping runs that already finished; `report` reads every finished
run's records and writes the tables. The run folders (runs/results/, weights included) stay out of the
repository; each finished run's provenance.json, config.yaml and scores.json are kept in
evaluate/records/, which the report reads, so a fresh clone remakes RESULTS.md exactly.

The plan's generate runs are teacher data generation: each variant (the teacher in process, or behind
a local server the runner starts and stops) is one generate command; its provenance.json, config.yaml,
stats.json, its kept tasks and a fixed random draw of them (examples.json) are kept the same way.

The plan's student runs compare students on one held-aside set: each variant is the base as it is or a
finetune with its overrides, then an inference run; one evaluate command scores all their answers with
paired deltas against the first. Each step's records and a few held-aside records with every variant's
answer are kept.

    python evaluate/results.py run --only jigsaw dbpedia
    python evaluate/results.py report

Project tooling beside the library, not part of it: `python evaluate/results.py` runs it from a checkout
(plan.py: the plan; runner.py: running it and keeping records; report.py and sections.py: RESULTS.md).
"""

from .cli import main
from .plan import (PLAN, PROJECT_ROOT, RECORDS_DIR, RESULTS_MD, RUNS_DIR, ComparisonRun, Evaluation, GenerateRun,
                   Server, StudentRun, Task, load_comparisons, load_generate, load_plan, load_students, select)
from .report import collect, report
from .runner import (call_forwarding_termination, keep_comparison_records, keep_generate_records, keep_records,
                     keep_student_records, run, serving)
from .sections import bench_section, comparison_section, generate_section, student_section

__all__ = [
    "PLAN", "PROJECT_ROOT", "RECORDS_DIR", "RESULTS_MD", "RUNS_DIR", "ComparisonRun", "Evaluation", "GenerateRun",
    "Server", "StudentRun", "Task", "bench_section", "call_forwarding_termination", "collect", "comparison_section",
    "generate_section", "keep_comparison_records", "keep_generate_records", "keep_records", "keep_student_records",
    "load_comparisons", "load_generate", "load_plan", "load_students", "main", "report", "run", "select",
    "serving", "student_section",
]
