"""Answer a held-aside set with a (tuned) model. `python inference.py --help` lists every setting.

    python inference.py --config demo
    python inference.py --model runs/demo/student --temperature 0.7 --top_k 50 --output_dir runs/t07
"""

import sys

from tunelab.stages.infer import main

if __name__ == "__main__":
    sys.exit(main())
