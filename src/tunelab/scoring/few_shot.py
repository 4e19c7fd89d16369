"""Zero- and k-shot baselines: a base model answering the eval set with k solved examples in its
prompt, once per seed (each seed draws its own shots), scored as any LLM's answers, mean ± std over seeds."""

from __future__ import annotations

import random

from ..errors import ConfigError
from ..metrics.classification import mean_std
from ..metrics.llm_answers import answers_headline, label_parser, score_answers


def draw_shots(pool: list[dict], k: int, seed: int, exclude_inputs: set[str] = frozenset()) -> list[dict]:
    """k examples drawn from `pool` with `seed`; examples whose input is in the eval set are never drawn.
    One draw per seed serves every eval example, so the spread over seeds is the spread over shot choices."""
    candidates = [r for r in pool if r.get("input", "") not in exclude_inputs]
    if k > len(candidates):
        raise ConfigError(f"{k} shots asked, but the shots data holds only {len(candidates)} examples outside "
                          "the eval set")
    return random.Random(seed).sample(candidates, k)


def few_shot_prompt(prompt, tokenizer, shots: list[dict], instruction: str, input_text: str) -> str:
    """The prompt of one eval example after `shots` ({instruction, input, output}) as solved examples.

    With a chat template the shots are earlier user/assistant turns; with a template file they are
    rendered prompts followed by their answers, one after another.
    """
    if prompt.is_chat:
        messages = []
        for s in shots:
            messages += [*prompt.messages(s["instruction"], s.get("input", "")),
                         {"role": "assistant", "content": s["output"]}]
        messages += prompt.messages(instruction, input_text)
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    solved = "".join(prompt.render(tokenizer, s["instruction"], s.get("input", "")) + s["output"] + "\n\n"
                     for s in shots)
    return solved + prompt.render(tokenizer, instruction, input_text)


def kshot_baselines(answer_fn, eval_rows: list[dict], pool: list[dict], shots: list[int], seeds: list[int],
                    labels, none_label: str, problem_type: str, *, deterministic: bool,
                    label_scores_fn=None) -> tuple[dict, dict]:
    """Score a base model answering `eval_rows` ({id, instruction, input, reference: labels}) with k solved
    examples from `pool` in the prompt, for every k in `shots` and every seed.

    `answer_fn(shot_records, seed) -> list[str]` answers every eval row in order. `deterministic`
    (greedy decoding): 0 shots give the same answers for every seed, so they are computed once.
    `label_scores_fn(shot_records, seed, answers) -> array` (rows as eval_rows, columns as labels), if
    given, scores each label for ROC-AUC and PR-AUC.
    Returns ({"<k>": {"shots", "runs": [per seed], "mean", "std"}}, {(k, seed): per-example rows}).
    """
    parser = label_parser(tuple(labels), none_label)
    exclude = {r.get("input", "") for r in eval_rows}
    references = [tuple(r["reference"]) for r in eval_rows]
    results, examples = {}, {}
    for k in shots:
        runs, cached = [], None
        for seed in seeds:
            drawn = draw_shots(pool, k, seed, exclude)
            if cached is not None:
                answers, label_scores = cached
            else:
                answers = list(answer_fn(drawn, seed))
                label_scores = label_scores_fn(drawn, seed, answers) if label_scores_fn else None
                if k == 0 and deterministic:
                    cached = answers, label_scores
            parsed = [parser.parse(a) for a in answers]
            scored = score_answers(references, parsed, labels, none_label, problem_type, label_scores)
            runs.append({"seed": seed, "shot_ids": [s.get("id") for s in drawn], "outcomes": scored["outcomes"],
                         **answers_headline(scored)})
            examples[(k, seed)] = [
                {"id": r.get("id"), "text": r.get("input", ""), "answer": a, "outcome": p.outcome, "reason": p.reason,
                 "reference": list(ref), "predicted": list(p.labels) if p.outcome in ("labels", "none") else None,
                 **({"label_probs": dict(zip(labels, map(float, row)))} if label_scores is not None else {})}
                for i, (r, a, p, ref) in enumerate(zip(eval_rows, answers, parsed, references))
                for row in [label_scores[i] if label_scores is not None else None]]
        numbers = [{kk: v for kk, v in run.items() if kk not in ("seed", "shot_ids")} for run in runs]
        entry = {"shots": k, "seeds": list(seeds), "runs": runs, **mean_std(numbers)}
        if cached is not None:
            entry["note"] = "0 shots with greedy decoding: every seed gives the same answers (computed once)"
        results[str(k)] = entry
    return results, examples
