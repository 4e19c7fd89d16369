"""README.md cards: a model card in every model folder, a dataset card in every generate run folder.

    facts.py    what a card reads about a run (RunFacts, input files, shipped samples, record counts)
    model.py    model cards: student adapters, full fine-tunes, classifiers, merged models
    dataset.py  dataset cards: generate run folders

    write_model_card(out, record, summary)      # finetune: student adapter, full model, classifier
    write_merged_model_card(out, student, ...)  # merge: the adapter's facts plus the merge and its check
    ensure_model_card(folder)                   # push: a folder without a tunelab card gets one
    write_dataset_card(out, stats, record)      # generate
"""

from .dataset import TASK_DESCRIPTIONS, dataset_card_text, file_format, write_dataset_card
from .facts import (BUILTIN_MODELS, CARD, CARD_PACKAGES, DATASET_CARD_MARKER, MODEL_CARD_MARKER, SAMPLE_LIMITS,
                    InputFile, RunFacts, beside_dataset_card, count_records, describe_base, display_path, folder_kind,
                    hub_model_id, is_hub_repo, is_random_base, parse_inputs, shipped_sample, shipped_samples)
from .model import (ensure_model_card, has_tunelab_card, merged_model_card_text, model_card_text, write_merged_model_card,
                    write_model_card)

__all__ = [
    "BUILTIN_MODELS", "CARD", "CARD_PACKAGES", "DATASET_CARD_MARKER", "MODEL_CARD_MARKER", "SAMPLE_LIMITS",
    "TASK_DESCRIPTIONS", "InputFile", "RunFacts", "beside_dataset_card", "count_records", "dataset_card_text",
    "describe_base", "display_path", "ensure_model_card", "file_format", "folder_kind", "has_tunelab_card",
    "hub_model_id", "is_hub_repo", "is_random_base", "merged_model_card_text", "model_card_text", "parse_inputs",
    "shipped_sample", "shipped_samples", "write_dataset_card", "write_merged_model_card", "write_model_card",
]
