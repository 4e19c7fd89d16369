"""Teacher-written moderation QA: a post (text, or image plus text) -> QA pairs and per-category verdicts.

Columns in: posts {id, text, image?} from any CSV/JSONL (text and image columns named in config;
images are paths under a declared root, or http(s) URLs for the HTTP teacher).
Teacher answer: one JSON object {"qa": [{question, answer}], "verdicts": [{category, violates, rationale}]},
checked against `ANSWER_SCHEMA` and the taxonomy (every category exactly once); or, from the few-shot
template small teachers can finish, labelled lines (Question N / Answer N / Categories / Reason).
Columns out: structured records {id, text, image, qa, verdicts, labels}; instruction pairs in
Alpaca ({instruction, input, output, image?}), chat ({messages} with image parts) and
prompt/completion formats. A post's QA pairs and its verdict become separate examples. Images in
the outputs are paths relative to the images root (URLs as given), so the files stay valid when
the folders move, and the student reads them with the same images_root.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RecordError
from ..records import read_table_rows
from ..taxonomy import Taxonomy
from ..teachers.answer_json import extract_json
from ..teachers.images import is_remote, resolve_image, user_message, verify_image

ANSWER_SCHEMA = {
    "type": "object",
    "required": ["qa", "verdicts"],
    "properties": {
        "qa": {
            "type": "array", "minItems": 1,
            "items": {"type": "object", "required": ["question", "answer"],
                      "properties": {"question": {"type": "string", "minLength": 3},
                                     "answer": {"type": "string", "minLength": 1}}},
        },
        "verdicts": {
            "type": "array", "minItems": 1,
            "items": {"type": "object", "required": ["category", "violates", "rationale"],
                      "properties": {"category": {"type": "string"}, "violates": {"type": "boolean"},
                                     "rationale": {"type": "string", "minLength": 1}}},
        },
    },
}


@dataclass
class Post:
    id: str
    text: str
    image: str | None  # absolute local path or http(s) URL: what the teacher reads
    line: int
    image_ref: str | None = None  # what outputs record: the path relative to the images root, or the URL

    def __post_init__(self):
        if self.image_ref is None:
            self.image_ref = self.image


@dataclass
class ParsedQA:
    qa: list[dict] = field(default_factory=list)
    verdicts: list[dict] = field(default_factory=list)
    reject: str | None = None  # why the answer cannot be used; None when it can
    unfinished: bool = False  # the answer may go on past its end: with a length cut, the limit's fault


def load_posts(path: str | Path, text_column: str, image_column: str | None = None, images_root: str | Path | None = None,
               *, allow_urls: bool = False, limit: int | None = None) -> list[Post]:
    """Read posts; an empty post (no text, no image) or an image outside the root names its line."""
    path = Path(path)
    root = Path(images_root) if images_root else path.parent
    rows = read_table_rows(path, [text_column] + ([image_column] if image_column else []))
    posts = []
    for line, row in rows:
        text = row.get(text_column)
        text = text.strip() if isinstance(text, str) else ""
        image_ref = row.get(image_column) if image_column else None
        image = ref = None
        if isinstance(image_ref, str) and image_ref.strip():
            try:
                image = ref = resolve_image(image_ref, root, allow_urls=allow_urls)
                if not is_remote(image):
                    verify_image(image)  # also keeps non-image files under the root from being sent anywhere
                    ref = Path(image).relative_to(root.resolve()).as_posix()
            except ValueError as e:
                raise RecordError(path, line, str(e)) from None
        if not text and image is None:
            raise RecordError(path, line, f"post has neither text ('{text_column}') nor an image")
        row_id = row.get("id")
        posts.append(Post(str(row_id) if row_id not in (None, "") else f"{path.stem}:{line}", text, image, line, ref))
        if limit is not None and len(posts) >= limit:
            break
    if not posts:
        raise RecordError(path, None, "holds no posts")
    return posts


def request_messages(post: Post, prompt: str) -> list[dict]:
    return [user_message(prompt, [post.image] if post.image else [])]


def parse_answer(answer: str, taxonomy: Taxonomy) -> ParsedQA:
    """Validate a teacher answer, JSON or labelled lines; never raises, a bad answer comes back with its
    reject reason."""
    obj, problem = extract_json(answer)
    if problem is None:
        return _parse_json(obj, taxonomy)
    if problem == "empty answer":
        return ParsedQA(reject=problem)
    lines = _parse_lines(answer, taxonomy)
    if lines.reject and "{" in answer:  # a JSON answer that does not parse: its own reason, not the lines'
        return ParsedQA(reject=problem)
    return lines


def _parse_json(obj: object, taxonomy: Taxonomy) -> ParsedQA:
    import jsonschema

    try:
        jsonschema.validate(obj, ANSWER_SCHEMA)
    except jsonschema.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "top level"
        return ParsedQA(reject=f"schema: {where}: {e.message[:120]}")
    except RecursionError:
        return ParsedQA(reject="schema: nested too deeply")
    categories = [v["category"].strip() for v in obj["verdicts"]]
    unknown = sorted(set(categories) - set(taxonomy.labels))
    if unknown:
        return ParsedQA(reject=f"unknown categories {unknown[:5]}")
    if len(set(categories)) != len(categories):
        return ParsedQA(reject="a category has more than one verdict")
    missing = [c for c in taxonomy.labels if c not in categories]
    if missing:
        return ParsedQA(reject=f"no verdict for {missing[:5]}")
    qa = [{"question": q["question"].strip(), "answer": q["answer"].strip()} for q in obj["qa"]]
    by_category = {v["category"].strip(): v for v in obj["verdicts"]}
    verdicts = [{"category": c, "violates": by_category[c]["violates"], "rationale": by_category[c]["rationale"].strip()}
                for c in taxonomy.labels]
    if empty := [v["category"] for v in verdicts if not v["rationale"]]:
        return ParsedQA(reject=f"empty rationale for {empty[:5]}")
    return ParsedQA(qa=qa, verdicts=verdicts)


# "Question 2: ...", "**Answer 2:** ...", "Categories: toxic, insult", "Reason: ..."; a "Comment:" or "Post:"
# line after the first block is the teacher writing its next example, where its answer ends.
_LINE = re.compile(r"^[\s*#>-]*(question|answer|categories|category|reason|comment|post)\b\s*\d*[\s*.)]*:\**\s*(.*)$",
                   re.I)
_NONE_WORDS = {"none", "no", "nothing", "n/a", "no categories", "none of them", "none of the above"}
# what may follow a category's name in a person's spelling of it: insults, threatening, threatened, toxicity
_INFLECTION = re.compile(r"(s|es|ing|ening|en|ed|ened|ity|ous|ful)?")


def _category(name: str, labels: tuple[str, ...] | list[str]) -> str:
    """A category as a person reads it: 'insults' and 'threatening' are insult and threat, 'severe' is
    severe_toxic; a name that fits no label, or more than one, stays as written (and is rejected)."""
    if name in labels:
        return name
    fits = [label for label in labels if (name.startswith(label) and _INFLECTION.fullmatch(name[len(label):]))
            or (len(name) >= 4 and label.startswith(name))]
    # labels nested in one another ('hate', 'hate_speech') fit together: the longest is the reading
    longest = max(fits, key=len, default=None)
    if longest and all(longest.startswith(f) or f == longest for f in fits):
        return longest
    return name


def _named_categories(line: str, taxonomy: Taxonomy) -> tuple[list[str], bool]:
    """The names on a Categories line, each read with `_category`, and whether it also says none. Whole label
    phrases are found first, so "suicide and self harm" is one name, not two."""
    text = line.lower().strip(" .*\"'`")
    none_words = _NONE_WORDS | {taxonomy.none_label}
    if text in none_words:
        return [], True
    named = []
    for label in sorted(taxonomy.labels, key=len, reverse=True):
        phrase = r"[\s_-]+".join(re.escape(word) for word in re.split(r"[\s_-]+", label.lower()))
        if match := re.search(rf"(?<![\w-]){phrase}(?![\w-])", text):
            named.append(label)
            text = text[:match.start()] + "," + text[match.end():]
    said_none = False
    for part in re.split(r",|;|/|\band\b", text):
        name = re.sub(r"[\s-]+", "_", part.strip(" .*\"'`"))
        if not name:
            continue
        if name.replace("_", " ") in none_words:
            said_none = True
        elif (read := _category(name, taxonomy.labels)) not in named:
            named.append(read)
    return named, said_none


def _parse_lines(answer: str, taxonomy: Taxonomy) -> ParsedQA:
    fields: list[list[str]] = []  # [label, text], continuation lines joined to the field above
    followed = False  # the teacher went on to a next block: its first one is complete
    for line in answer.splitlines():
        match = _LINE.match(line)
        if match:
            label = match.group(1).lower()
            label = "categories" if label == "category" else label
            if label in ("comment", "post") and fields:
                followed = True
                break
            fields.append([label, match.group(2).strip()])
        elif fields and line.strip():
            fields[-1][1] = f"{fields[-1][1]} {line.strip()}".strip()
    if not fields:
        return ParsedQA(reject="no JSON object or Question/Answer/Categories lines in the answer")
    qa, question, categories, reason = [], None, None, None
    for label, text in fields:
        if categories is None and label == "question":
            question = text
        elif categories is None and label == "answer" and question:
            qa.append({"question": question, "answer": text})
            question = None
        elif label == "categories" and categories is None:
            categories = text
        elif label == "reason" and categories is not None and reason is None:
            reason = text
        elif label == "question" and categories is not None:
            followed = True  # a second block
            break
    qa = [q for q in qa if len(q["question"]) >= 3 and q["answer"]]
    if not qa:
        return ParsedQA(reject="no question/answer pairs", unfinished=categories is None and not followed)
    if categories is None:
        return ParsedQA(reject="no Categories line", unfinished=not followed)
    if not reason:
        return ParsedQA(reject="no Reason line", unfinished=not followed)
    named, none_named = _named_categories(categories, taxonomy)
    if not named and not none_named:
        return ParsedQA(reject="the Categories line is empty")
    if none_named and named:
        return ParsedQA(reject=f"the verdict names none and categories: {categories[:80]!r}")
    unknown = [n for n in named if n not in taxonomy.labels]
    if unknown:
        return ParsedQA(reject=f"unknown categories {unknown[:5]}")
    verdicts = [{"category": c, "violates": c in named, "rationale": reason} for c in taxonomy.labels]
    return ParsedQA(qa=qa, verdicts=verdicts, unfinished=not followed)


def verdict_answer(verdicts: list[dict], taxonomy: Taxonomy) -> str:
    """The student's verdict: the fixed label line first (it parses back into labels), then the reasons."""
    labels = [v["category"] for v in verdicts if v["violates"]]
    one_line = {v["category"]: " ".join(v["rationale"].split()) for v in verdicts}  # each reason stays one "- " line
    reasons = "\n".join(f"- {c}: {one_line[c]}" for c in labels) or "- " + next(iter(one_line.values()), "")
    return (", ".join(labels) or taxonomy.none_label) + "\n" + reasons


def instruction_pairs(post: Post, parsed: ParsedQA, taxonomy: Taxonomy, verdict_instruction: str) -> list[dict]:
    """Alpaca-style examples from one post: one per QA pair, and one verdict."""
    base = {"input": post.text} | ({"image": post.image_ref} if post.image else {})
    pairs = [{"id": f"{post.id}:qa{i}", "instruction": q["question"], "output": q["answer"], **base}
             for i, q in enumerate(parsed.qa)]
    pairs.append({"id": f"{post.id}:verdict", "instruction": verdict_instruction,
                  "output": verdict_answer(parsed.verdicts, taxonomy), **base})
    return pairs


def pair_to_chat(pair: dict) -> dict:
    """A chat record; an image post's user turn carries the image part (the LLaVA student's input)."""
    text = pair["instruction"] + (f"\n\n{pair['input']}" if pair["input"] else "")
    return {"id": pair["id"],
            "messages": [user_message(text, [pair["image"]] if pair.get("image") else []),
                         {"role": "assistant", "content": pair["output"]}]}
