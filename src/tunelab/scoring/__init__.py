"""What evaluate scores, one module per thing: generated text (`text`), an encoder classifier
(`classifier`), an LLM's answers in words (`answers`), and a base model's zero/k-shot answers beside
them (`baselines`, `few_shot`). Settings and their checks are in `settings`; each returns a typed
`tunelab.metrics.scores.Scores`."""
