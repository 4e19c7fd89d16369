"""Merge a student's LoRA adapter into its base. `python finetune/merge.py --help` lists every setting.

    python finetune/merge.py --model runs/demo/student --output_dir runs/demo/merged
    python finetune/merge.py --model runs/llama2-qlora --output_dir runs/llama2-merged --push_to_hub --hub_repo_id me/llama2-student
"""

import sys

from tunelab.stages.merge import main

if __name__ == "__main__":
    sys.exit(main())
