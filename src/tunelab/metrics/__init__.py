"""Scores: text (BLEU, ROUGE-L, BERTScore) and classification (P/R/F1, ROC-AUC)."""
