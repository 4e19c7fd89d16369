"""Dataset builders: self-instruct (Alpaca style) and moderation sets from labelled corpora."""
