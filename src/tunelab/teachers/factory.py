"""Teacher construction from config: one place that maps a backend name to its class."""

from __future__ import annotations

from ..errors import ConfigError


def _transformers(cfg):
    from .transformers_teacher import TransformersTeacher

    return TransformersTeacher(cfg.teacher, dtype=cfg.teacher_dtype, device_map=cfg.teacher_device_map,
                               trust_remote_code=cfg.trust_remote_code)


BACKENDS = {"transformers": _transformers}


def make_teacher(cfg):
    """Build the teacher named by `cfg.teacher_backend` (see `tunelab.stages.generate.TeacherConfig`)."""
    try:
        builder = BACKENDS[cfg.teacher_backend]
    except KeyError:
        raise ConfigError(f"unknown teacher_backend {cfg.teacher_backend!r}; available: {', '.join(BACKENDS)}") from None
    return builder(cfg)
