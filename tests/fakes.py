"""A canned teacher for parser and pipeline tests: it answers in Alpaca's numbered format."""

from pathlib import Path

from tunelab.teachers.base import BatchedTeacher, TeacherResponse


def numbered_answer(start: int, tasks: list[tuple[str, str, str]], cut_last: bool = False) -> str:
    """The continuation of a prompt that ended with f"{start}. Instruction:"."""
    parts = []
    for offset, (instruction, task_input, output) in enumerate(tasks):
        n = start + offset
        head = f" {instruction}" if offset == 0 else f"{n}. Instruction: {instruction}"
        parts.append(f"{head}\n{n}. Input:\n{task_input or '<noinput>'}\n{n}. Output:\n{output}\n")
    text = "###\n".join(parts)
    return text + (f"###\n{start + len(tasks)}. Instruction: Describe the" if cut_last else "")


# The default QA request: the JSON template as a chat turn (the demo config asks SmolLM2 in labelled lines instead).
JSON_QA = ["--qa_template", "moderation_qa", "--qa_request", "chat"]
NO_READING = "no JSON object or Question/Answer/Categories lines in the answer"  # a QA answer with neither form
# The tests' LoRA student on the tiny random Llama (mechanics in seconds; the demo's student is SmolLM2).
TINY_STUDENT_CONFIG = str(Path(__file__).parent / "fixtures" / "tiny_student.yaml")

class CannedTeacher(BatchedTeacher):
    """Answers every request with the next canned text; counts what it was asked."""

    def __init__(self, answers: list[str], name: str = "canned", batch_size: int = 8, finish_reason: str = "stop"):
        self.name = name
        self.answers = answers
        self.batch_size = batch_size
        self.finish_reason = finish_reason
        self.calls = 0

    def generate_batch(self, requests, params):
        out = []
        for _ in requests:
            text = self.answers[self.calls % len(self.answers)]
            self.calls += 1
            out.append(TeacherResponse(text, self.finish_reason, 10, len(text.split())))
        return out
