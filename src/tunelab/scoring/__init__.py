"""What evaluate scores, one module per thing: generated text (`text`), an encoder classifier
(`classifier`), an LLM's answers in words (`answers`), and k-shot inference runs of a base model
beside them (`baselines`). Settings and their checks are in `settings`; each returns a typed
`tunelab.metrics.scores.Scores`."""
