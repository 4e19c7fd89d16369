"""Fine-tune a student. `python finetune/train.py --help` lists its settings; `--help-all` adds TRL's SFTConfig.

    python finetune/train.py --config demo_student
    python finetune/train.py --base meta-llama/Llama-2-7b-chat-hf --data data/alpaca_sample.json --output_dir runs/llama2
"""

import sys

from tunelab.stages.finetune import main

if __name__ == "__main__":
    sys.exit(main())
