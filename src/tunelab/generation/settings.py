"""The generate stage's settings: the run, the teacher and sampling, and each build's own."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..judge.rubric import JudgeRubricConfig
from ..teachers.factory import TeacherSpec

TASKS = ("moderation", "corpora", "self_instruct", "moderation_qa", "responses", "judge", "preferences")


@dataclass
class GenerateConfig:
    output_dir: str = field(default="runs/generate", metadata={"help": "Where datasets, stats and the run record go."})
    tasks: list[str] = field(default_factory=lambda: ["moderation", "self_instruct"],
                             metadata={"help": f"Builders to run, of {TASKS}."})
    seed: int = field(default=0, metadata={"help": "Seeds sampling of seed tasks, splits and answers: same seed, same requests."})
    overwrite: bool = field(default=False, metadata={"help": "Replace outputs of a finished run (the teacher cache is kept)."})
    dry_run: bool = field(default=False, metadata={
        "help": "Count requests and prompt tokens, estimate time and cost; send nothing, write nothing."})
    near_duplicate_threshold: float = field(default=0.8, metadata={"range": (0, 1),
        "help": "Drop a teacher-written record whose MinHash Jaccard with a kept one reaches this; 0 turns it off."})
    decontaminate_against: list[str] = field(default_factory=lambda: ["data/alpaca_heldout.json"], metadata={
        "help": "Evaluation sets (Alpaca JSON, JSONL with text, chat or prompt/completion); overlapping records are dropped."})
    decontamination_ngram: int = field(default=8, metadata={"range": (1, None), "help": "Shared word n-gram length that counts as overlap."})


@dataclass
class TeacherConfig:
    teacher: str = field(default="tunelab:tiny-llama", metadata={
        "help": "Hub id, local folder, tunelab:tiny-llama; for openai, the model name the server serves."})
    teacher_backend: str = field(default="transformers", metadata={
        "help": "transformers | llava_next (image posts) | openai (any OpenAI-compatible server) | vllm (extra)."})
    teacher_dtype: str = field(default="auto", metadata={"help": "auto (the checkpoint's, computed under bf16 autocast "
                                                                 "on CPUs with native bf16), bfloat16, float16 or float32."})
    teacher_device_map: str | None = field(default=None, metadata={"help": "'auto' spreads a large teacher over all GPUs."})
    teacher_quantization: str = field(default="none", metadata={
        "help": "none | 4bit (NF4: a 70B teacher in ~40 GB) | 8bit (~75 GB); bitsandbytes, in-process backends."})
    teacher_batch_size: int = field(default=8, metadata={"range": (1, None), "help": "In-process requests per generate() call: faster, more memory."})
    teacher_base_url: str | None = field(default=None, metadata={"help": "openai backend: e.g. http://localhost:8000/v1."})
    teacher_api_key_env: str | None = field(default=None, metadata={
        "help": "Name of the environment variable holding the API key (the key itself never goes in a config)."})
    teacher_max_in_flight: int = field(default=32, metadata={"range": (1, None), "help": "openai backend: concurrent requests."})
    teacher_timeout_s: float = field(default=300.0, metadata={"range": (0, None), "range_open": "low", "help": "openai backend: seconds before a request is retried."})
    teacher_max_retries: int = field(default=6, metadata={"range": (0, None), "help": "openai backend: retries on 429/5xx/timeouts/drops."})
    teacher_tensor_parallel_size: int = field(default=1, metadata={"range": (1, None), "help": "vllm backend: GPUs per model."})
    teacher_tokenizer: str | None = field(default=None, metadata={
        "help": "Tokenizer for --dry_run token counts when the teacher is remote (hub id or folder)."})
    teacher_tokens_per_s: float = field(default=500.0, metadata={"range": (0, None), "range_open": "low",
        "help": "--dry_run only: generated tokens per second you expect, for the time estimate."})
    price_per_1k_prompt_tokens: float = field(default=0.0, metadata={"range": (0, None), "help": "--dry_run only: cost estimate."})
    price_per_1k_completion_tokens: float = field(default=0.0, metadata={"range": (0, None), "help": "--dry_run only: cost estimate."})
    max_new_tokens: int = field(default=1024, metadata={"range": (1, None), "help": "Answer length cap; a task cut by it is dropped."})
    temperature: float = field(default=1.0, metadata={"range": (0, None), "help": "Alpaca used 1.0 for diversity; 0 is greedy."})
    top_p: float = field(default=1.0, metadata={"range": (0, 1), "range_open": "low",
        "help": "Nucleus sampling mass; below 1 trims unlikely words: safer text, less variety."})
    top_k: int = field(default=0, metadata={"range": (0, None), "help": "0 turns top-k off."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Run model code from the hub. Off unless you trust it."})

    def spec(self) -> TeacherSpec:
        return TeacherSpec(model=self.teacher, backend=self.teacher_backend, dtype=self.teacher_dtype,
                           device_map=self.teacher_device_map, quantization=self.teacher_quantization,
                           batch_size=self.teacher_batch_size, base_url=self.teacher_base_url,
                           api_key_env=self.teacher_api_key_env, max_in_flight=self.teacher_max_in_flight,
                           timeout_s=self.teacher_timeout_s, max_retries=self.teacher_max_retries,
                           tensor_parallel_size=self.teacher_tensor_parallel_size,
                           trust_remote_code=self.trust_remote_code)


@dataclass
class SelfInstructConfig:
    seed_tasks: str = field(default="data/seed_tasks.jsonl", metadata={"help": "Alpaca seed_tasks.jsonl format."})
    self_instruct_template: str = field(default="self_instruct", metadata={"help": "Teacher prompt in prompts/."})
    self_instruct_request: str = field(default="completion", metadata={
        "help": "completion: the teacher continues the numbered list (Alpaca's way, for base models and "
                "/completions); chat: the same text as one user turn (instruction-tuned teachers, /chat/completions)."})
    num_prompt_instructions: int = field(default=3, metadata={"range": (1, None), "help": "Seed examples per prompt (Alpaca: 3)."})
    requests_per_round: int = field(default=32, metadata={"range": (1, None),
        "help": "Prompts sent together; the target is checked between rounds. Match teacher_max_in_flight."})
    max_requests: int = field(default=64, metadata={"range": (1, None), "help": "Stop after this many prompts even below the target."})
    target_count: int = field(default=100, metadata={"range": (1, None), "help": "Stop once this many tasks are kept."})
    rouge_threshold: float = field(default=0.7, metadata={"range": (0, 1), "range_open": "low", "help": "Drop a task whose ROUGE-L vs any kept/seed task exceeds this."})


@dataclass
class ModerationConfig:
    corpus: str = field(default="data/jigsaw_sample.csv", metadata={"help": "CSV/JSONL with a text column and 0/1 label columns."})
    text_column: str = field(default="comment_text", metadata={"help": "Column of the corpus holding the text."})
    taxonomy: str = field(default="jigsaw", metadata={"help": "Taxonomy name in data/taxonomies/ or a YAML path."})
    label_columns: list[str] = field(default_factory=list, metadata={
        "help": "label=column pairs; a label with no pair reads the column of its own name."})
    moderation_template: str = field(default="moderation_instruction", metadata={"help": "Instruction template in prompts/."})
    test_per_label: int = field(default=50, metadata={"range": (0, None), "help": "Test examples per label (the study: 50)."})
    test_none: int = field(default=50, metadata={"range": (0, None), "help": "Test examples with no label (the study: 50)."})
    train_max_per_label: int = field(default=1000, metadata={"range": (0, None), "help": "Cap per label in train (the study: 400-1,000)."})
    train_none: int = field(default=1000, metadata={"range": (0, None), "help": "Train examples with no label."})


@dataclass
class CorporaConfig:
    """Task `corpora`: several moderation corpora mapped onto one declared taxonomy."""

    corpora: list[str] = field(default_factory=list, metadata={"group": "corpora",
        "help": "name=path entries, names of sources the corpora_taxonomy declares; repeat a name for more files "
                "(hatexplain val + subset); Kaggle's test: jigsaw=test.csv+test_labels.csv (joined by id)."})
    corpora_taxonomy: str = field(default="moderation", metadata={"group": "corpora",
        "help": "Taxonomy with a 'sources' mapping of each corpus's labels (data/taxonomies/moderation.yaml)."})
    corpora_split_fractions: list[float] = field(default_factory=lambda: [0.7, 0.1, 0.2], metadata={"range": (0, 1), "group": "corpora",
        "help": "train, dev, test shares per corpus (seeded, stratified by the mapped labels)."})
    max_rows_per_corpus: int = field(default=0, metadata={"range": (0, None), "group": "corpora",
        "help": "Seeded, stratified sample of at most this many rows per corpus (after de-duplication); 0 keeps all."})


@dataclass
class ModerationQAConfig:
    posts: str = field(default="data/jigsaw_sample.csv", metadata={"help": "CSV/JSONL of posts for teacher-written QA."})
    posts_text_column: str = field(default="comment_text", metadata={
        "help": "Column of the posts file holding the text."})
    posts_image_column: str | None = field(default=None, metadata={"help": "Column of image paths (or URLs for openai)."})
    images_root: str | None = field(default=None, metadata={
        "help": "Folder image paths are relative to; a path escaping it is rejected. Default: the posts file's folder."})
    max_posts: int = field(default=100, metadata={"range": (1, None), "help": "Posts to send (from the top of the file)."})
    qa_taxonomy: str = field(default="jigsaw", metadata={"help": "Categories for verdicts: jigsaw, llama_guard, or a YAML path."})
    qa_template: str = field(default="moderation_qa", metadata={"help": "Teacher prompt in prompts/."})
    qa_questions: int = field(default=3, metadata={"range": (1, None), "help": "QA pairs asked for per post."})
    qa_request: str = field(default="chat", metadata={
        "help": "chat: the prompt as one user turn; completion: the teacher continues the prompt's text and stops at "
                "a blank line (the few-shot template moderation_qa_fewshot, for small teachers and /completions)."})


@dataclass
class JudgeConfig(JudgeRubricConfig):
    """The judge (the run's teacher, answering greedily): task judge, and the preferences task's verdicts."""

    judge_data: str | None = field(default=None, metadata={
        "help": "Task judge: Alpaca JSON/JSONL records to rate. Default: what this run's self_instruct and "
                "moderation_qa kept."})
    judge_threshold: float = field(default=0.0, metadata={"range": (0, 10),
        "help": "Task judge: keep records whose mean score reaches this; 0 keeps every record the judge could rate."})


@dataclass
class ResponsesConfig:
    """Task responses: several answers per instruction from the run's teacher (a model, a student base, a server)."""

    responses_data: str = field(default="data/alpaca_sample.json", metadata={
        "help": "Instructions to answer (Alpaca JSON/JSONL); their output is kept as the reference answer."})
    responses_per_instruction: int = field(default=2, metadata={"range": (1, 16),
        "help": "Answers per instruction, each sampled with its own seed (temperature above 0 makes them differ)."})
    max_instructions: int = field(default=100, metadata={"range": (1, None), "help": "Instructions from the top of the file."})
    responses_request: str = field(default="chat", metadata={
        "help": "chat: the instruction as one user turn; completion: the student's Alpaca prompt (alpaca_student)."})


@dataclass
class PreferencesConfig:
    """Task preferences: judge every answer to an instruction, pair the best with a lower one (UltraFeedback's way)."""

    preferences_responses: list[str] = field(default_factory=list, metadata={
        "help": "responses.jsonl files of earlier runs (other models), merged by instruction id. Default: this run's."})
    preferences_judging: str = field(default="single", metadata={
        "help": "single: each answer scored on its own; pairwise: every two answers compared, in both orders."})
    include_reference: bool = field(default=True, metadata={
        "help": "The dataset's own answer (Alpaca's output) is a candidate too."})
    min_score_gap: float = field(default=1.0, metadata={"range": (0, None),
        "help": "single: chosen's mean score must beat rejected's by at least this; closer pairs are dropped and counted."})


@dataclass
class GenerateSettings:
    """Every settings group of one generate run, as parsed."""

    run: GenerateConfig
    teacher: TeacherConfig
    self_instruct: SelfInstructConfig
    moderation: ModerationConfig
    corpora: CorporaConfig
    moderation_qa: ModerationQAConfig
    judge: JudgeConfig
    responses: ResponsesConfig
    preferences: PreferencesConfig
