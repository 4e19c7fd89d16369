"""Build instruction data. `python generate/run.py --help` lists every setting.

    python generate/run.py --config demo
"""

import sys

from tunelab.stages.generate import main

if __name__ == "__main__":
    sys.exit(main())
