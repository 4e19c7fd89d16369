"""Dataset builders: self-instruct (Alpaca style), moderation QA about posts, and moderation sets from
labelled corpora. `builds.py` is the shape every build has, `registry.py` the builds by task name,
`settings.py` the generate stage's settings; the rest is each build's own logic."""
