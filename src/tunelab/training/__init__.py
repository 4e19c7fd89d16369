"""Students, one recipe each on one skeleton (`runner.FinetuneRecipe`): causal SFT (`sft.py`, TRL's
SFTTrainer), vision SFT (`vision.py`: SFT with the processor and TRL's vision collator) and classifiers
(`classify/`, the HF Trainer). Their settings are `arguments.py`; what a trained student folder is,
`student_info.py`."""
