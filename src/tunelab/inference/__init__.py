"""Answers for people to read (inference.py's library): settings and the decoding grid (`settings.py`),
the records answered (`examples.py`), what answers them (`backend.py`) and the files the answers go to
(`outputs.py`). The decoding loop itself is `teachers.decoding`, shared with the generate stage's teachers."""
