"""Run the result recipes on real data and write RESULTS.md from their run records.

    python evaluate/results.py list                 # the plan's commands
    python evaluate/results.py run --only jigsaw    # train and score (finished runs are skipped)
    python evaluate/results.py report               # RESULTS.md from evaluate/records/
"""

import sys

from result_runs import main  # evaluate/result_runs, beside this script (its folder is first on sys.path)

if __name__ == "__main__":
    sys.exit(main())
