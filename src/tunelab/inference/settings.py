"""inference.py's settings, and the grid of decoding settings they expand into."""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass, field

from ..errors import ConfigError
from ..teachers.base import SamplingParams
from .files import PREDICTIONS, SWEEP_DIR, SWEEP_INDEX

BACKENDS = ("transformers", "openai", "vllm")
# Decoding settings that take lists, in the order their grid is expanded.
GRID_FIELDS = ("max_new_tokens", "temperature", "top_k", "top_p", "num_beams", "repetition_penalty")
# Settings a resumed run may change: they change how answers are fetched, never what they are.
OPERATIONAL_FIELDS = ("resume", "overwrite", "batch_size", "base_url", "api_key_env", "max_in_flight", "timeout_s",
                      "max_retries")


@dataclass
class InferenceConfig:
    model: str = field(metadata={"help": "A finetune output folder (base + adapter), a merged model, a hub id or "
                                         "tunelab:tiny-llama; for --backend openai, the model name the server serves."})
    data: str = field(default="data/alpaca_heldout.json", metadata={
        "group": "data", "help": "Alpaca records ('output' is kept as the reference; 'image', a path, for LLaVA "
                                 "students) or chat JSONL (a user turn, image_url parts allowed, then the answer)."})
    images_root: str | None = field(default=None, metadata={"group": "data",
        "help": "Folder the data's image paths are relative to (default: the data file's folder); a path "
                "resolving outside it is refused. The generate stage writes paths relative to its own images_root."})
    output_dir: str = field(default="runs/inference", metadata={"group": "output",
        "help": f"Gets {PREDICTIONS} (one setting) or {SWEEP_DIR}/*.jsonl (a sweep), {SWEEP_INDEX}, config.yaml, "
                "provenance.json."})
    template: str | None = field(default=None, metadata={
        "help": "Prompt format: chat, a template in prompts/, or a path; default: the one saved with the model, "
                "else the model's chat template, else alpaca_student (servers: chat)."})
    # Decoding: each takes one value or several; several make a sweep over their grid.
    max_new_tokens: list[int] = field(default_factory=lambda: [128], metadata={"range": (1, None), "group": "decoding",
        "help": "Answer length cap; a row cut by it has finish_reason 'length'."})
    temperature: list[float] = field(default_factory=lambda: [0.0], metadata={"range": (0, None), "group": "decoding",
        "help": "0 = greedy (or beam search); > 0 samples. Greedy ignores top_k and top_p, so those combinations "
                "collapse into one setting."})
    top_k: list[int] = field(default_factory=lambda: [0], metadata={"range": (0, None),
        "group": "decoding", "help": "Sample from the k likeliest tokens; 0 = off."})
    top_p: list[float] = field(default_factory=lambda: [1.0], metadata={"range": (0, 1), "range_open": "low",
        "group": "decoding", "help": "Nucleus sampling mass; 1 = off."})
    num_beams: list[int] = field(default_factory=lambda: [1], metadata={"range": (1, None), "group": "decoding",
        "help": "Beam search width, with temperature 0; a sweep skips beams > 1 with temperature > 0 (beam search "
                "does not sample here)."})
    repetition_penalty: list[float] = field(default_factory=lambda: [1.0], metadata={"range": (0, None), "range_open": "low",
        "group": "decoding", "help": "1 = off; > 1 discourages repeats."})
    seed: int = field(default=0, metadata={"group": "decoding",
        "help": "Sampling is seeded per example from this and the prompt (recorded in each row): an answer does "
                "not depend on its batch."})
    backend: str = field(default="transformers", metadata={"group": "backend",
        "help": "transformers (in process) | openai (any OpenAI-compatible server, e.g. vllm serve) | vllm "
                "(in process, optional extra, CUDA, no adapters)."})
    batch_size: int = field(default=8, metadata={"range": (1, None), "group": "backend",
        "help": "In-process prompts per generate() call, length-sorted: faster, more memory; answers do not change."})
    base_url: str | None = field(default=None, metadata={
        "group": "backend", "help": "openai backend: e.g. http://localhost:8000/v1."})
    api_key_env: str | None = field(default=None, metadata={"group": "backend",
        "help": "openai backend: NAME of the environment variable holding the API key (never the key)."})
    max_in_flight: int = field(default=32, metadata={"range": (1, None),
        "group": "backend", "help": "openai backend: concurrent requests."})
    timeout_s: float = field(default=300.0, metadata={"range": (0, None), "range_open": "low",
        "group": "backend", "help": "openai backend: seconds before a request is retried."})
    max_retries: int = field(default=6, metadata={"range": (0, None),
        "group": "backend", "help": "openai backend: retries on 429/5xx/timeouts/drops."})
    tensor_parallel_size: int = field(default=1, metadata={"range": (1, None), "group": "backend", "help": "vllm backend: GPUs per model."})
    label_probs: list[str] = field(default_factory=list, metadata={"group": "output",
        "help": "Also record each label's probability in every row (label_probs), read from the model's next-token "
                "distributions, for evaluate's ROC and PR curves: a taxonomy (jigsaw, or a YAML file) or the label "
                "names (positive negative). transformers backend only; costs a forward pass per label and place "
                "a label can begin in the answer."})
    limit: int | None = field(default=None, metadata={"range": (1, None), "group": "data", "help": "Answer only the first N examples."})
    shots: int = field(default=0, metadata={"range": (0, None), "group": "data",
        "help": "Solved examples before each example in its prompt (a k-shot run of a base model): the same k "
                "records, drawn from --shots_data with --shots_seed, for every example; 0: none."})
    shots_data: str | None = field(default=None, metadata={"group": "data",
        "help": "Alpaca records the shots are drawn from (e.g. moderation_train.alpaca.json); a record whose "
                "input is among the examples answered is never drawn."})
    shots_seed: int = field(default=0, metadata={"group": "data",
        "help": "Seed of the draw: runs with several seeds show the spread over choices of shots."})
    dtype: str = field(default="auto", metadata={
        "help": "In-process weights dtype: auto (the checkpoint's; generation under bf16 autocast on CPUs with native "
                "bf16, about 1.5x faster), bfloat16 or float16 (half of float32's memory), float32."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Run model code from the hub. Off unless you trust it."})
    resume: bool = field(default=False, metadata={"group": "output",
        "help": "Continue a run in output_dir, finished or not, with the same settings (an unfinished run "
                "continues without it)."})
    overwrite: bool = field(default=False, metadata={
        "group": "output", "help": "Replace an existing, non-empty output_dir."})

    def __post_init__(self):
        # A YAML scalar (`temperature: 0.7`) arrives as one value; the grid wants lists.
        for name in GRID_FIELDS:
            value = getattr(self, name)
            setattr(self, name, list(value) if isinstance(value, (list, tuple)) else [value])


@dataclass(frozen=True)
class Setting:
    """One point of the decoding grid: its file name and its parameters."""

    name: str
    params: SamplingParams

    @property
    def decoding(self) -> dict:
        """The parameters as every row records them (JSON types: the stop tuple is a list)."""
        return json.loads(json.dumps(asdict(self.params)))


def _fmt(x: float) -> str:
    return f"{x:g}"


def expand_grid(cfg: InferenceConfig) -> tuple[list[Setting], list[dict]]:
    """The distinct settings of the decoding grid (every value checked first), and the combinations skipped with why.

    Greedy decoding (temperature 0) ignores top_k and top_p, so they are reset to off and the
    duplicates dropped. Beam search does not sample here, so temperature > 0 with beams > 1 is
    skipped rather than run as a second, mislabelled copy of beam search.
    """
    check_values(cfg)
    settings: dict[SamplingParams, str] = {}
    skipped: list[dict] = []
    for combo in itertools.product(*(getattr(cfg, f) for f in GRID_FIELDS)):
        given = dict(zip(GRID_FIELDS, combo))
        if given["temperature"] > 0 and given["num_beams"] > 1:
            skipped.append({"setting": given, "reason": "temperature > 0 with num_beams > 1: beam search does not "
                                                        "sample; use temperature 0 for beam search"})
            continue
        canonical = dict(given)
        if canonical["temperature"] == 0:
            canonical.update(top_k=0, top_p=1.0)
        params = SamplingParams(**canonical, seed=cfg.seed)
        if params in settings:
            if canonical != given:
                skipped.append({"setting": given, "reason": "greedy decoding ignores top_k and top_p: same as "
                                                            f"{_name(params, cfg)}"})
            continue
        settings[params] = _name(params, cfg)
    if not settings:
        raise ConfigError("no decoding setting left to run: " + "; ".join(s["reason"] for s in skipped[:1]))
    names = list(settings.values())
    if len(set(names)) != len(names):  # e.g. 0.7 and 0.70000001 print alike
        raise ConfigError(f"decoding settings that differ only below 6 significant digits: {sorted(names)}")
    return [Setting(name, params) for params, name in settings.items()], skipped


def _name(p, cfg: InferenceConfig) -> str:
    """A readable file name: t, k and b always; p and rp when on; n when the grid varies it."""
    name = f"t{_fmt(p.temperature)}_k{p.top_k}_b{p.num_beams}"
    if p.top_p != 1.0:
        name += f"_p{_fmt(p.top_p)}"
    if p.repetition_penalty != 1.0:
        name += f"_rp{_fmt(p.repetition_penalty)}"
    if len(set(cfg.max_new_tokens)) > 1:
        name += f"_n{p.max_new_tokens}"
    return name


def check_values(cfg: InferenceConfig) -> None:
    """Settings that conflict; each number's own range is checked where it is parsed (its field's `range`)."""
    if cfg.backend not in BACKENDS:
        raise ConfigError(f"unknown backend {cfg.backend!r}; choose from {', '.join(BACKENDS)}")
    if cfg.resume and cfg.overwrite:
        raise ConfigError("resume continues the run in output_dir; overwrite would replace it: choose one")
    if cfg.backend != "transformers" and max(cfg.num_beams) > 1:
        raise ConfigError(f"backend {cfg.backend} does not beam search (the OpenAI API and vLLM's sampling "
                          "parameters have no beams); use --backend transformers for num_beams > 1")
    if cfg.label_probs and cfg.backend != "transformers":
        raise ConfigError(f"label_probs needs the model's full next-token distributions, which only --backend "
                          f"transformers gives here ({cfg.backend} returns the sampled tokens)")
    if cfg.shots and not cfg.shots_data:
        raise ConfigError(f"shots {cfg.shots}: give --shots_data, the alpaca records the solved examples are "
                          "drawn from")
    if cfg.shots_data and not cfg.shots:
        raise ConfigError("shots_data is read only for --shots > 0")
    if cfg.backend == "openai" and not cfg.base_url:
        raise ConfigError("backend openai needs --base_url, e.g. http://localhost:8000/v1 (vllm serve's address)")
