"""Students: LoRA SFT of causal LMs (TRL's SFTTrainer) and encoder classifiers (the HF Trainer)."""
