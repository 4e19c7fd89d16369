"""Upload a finished model folder with its model card. `python finetune/push.py --help` lists every setting.

    python finetune/push.py --model runs/demo/latest/classifier --hub_repo_id me/toxicity-minilm
"""

import sys

from tunelab.stages.push import main

if __name__ == "__main__":
    sys.exit(main())
