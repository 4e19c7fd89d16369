"""The builds by task name, each made from its own settings."""

from __future__ import annotations

from .builds import Build
from .corpus_builds import CorporaBuild, ModerationBuild
from .settings import TASKS, GenerateSettings
from .judge_builds import JudgeBuild
from .preference_builds import PreferencesBuild, ResponsesBuild
from .teacher_builds import ModerationQABuild, SelfInstructBuild

BUILDS = {
    "moderation": lambda s, params: ModerationBuild(s.moderation, s.run.seed, s.run.near_duplicate_threshold),
    "corpora": lambda s, params: CorporaBuild(s.corpora, s.run.seed),
    "self_instruct": lambda s, params: SelfInstructBuild(s.self_instruct, params, s.run.seed),
    "moderation_qa": lambda s, params: ModerationQABuild(s.moderation_qa, s.teacher, params),
    "responses": lambda s, params: ResponsesBuild(s.responses, params, s.run.seed),
    "judge": lambda s, params: JudgeBuild(s.judge, s.run.tasks, s.teacher.teacher_backend),
    "preferences": lambda s, params: PreferencesBuild(s.preferences, s.judge, s.run.tasks, s.run.seed, s.responses,
                                                      s.teacher.teacher_backend),
}
assert tuple(BUILDS) == TASKS  # the order builds run in


def make_builds(settings: GenerateSettings, params) -> list[Build]:
    """The run's builds in the order they run (corpus builds first, then the teacher's); every setting and
    small input is checked here, before anything is created or sent."""
    return [BUILDS[name](settings, params) for name in TASKS if name in settings.run.tasks]
