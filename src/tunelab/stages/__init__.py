"""Stage entry points: each parses its typed config, runs the library, and records the run.

`generate/run.py`, `finetune/train.py`, `inference.py` and `evaluate/score.py` call these `main`s;
so does the `tunelab` command.
"""
