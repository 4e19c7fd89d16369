"""Score generated text or a classifier. `python evaluate/score.py --help` lists every setting.

    python evaluate/score.py --config demo_text
    python evaluate/score.py --config demo_classifier
"""

import sys

from tunelab.stages.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
