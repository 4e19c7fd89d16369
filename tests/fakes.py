"""A canned teacher for parser and pipeline tests: it answers in Alpaca's numbered format."""

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
