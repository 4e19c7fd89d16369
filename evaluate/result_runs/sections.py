"""RESULTS.md sections of generate runs, student runs, comparisons and benchmarks."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from tunelab.config import load_yaml
from tunelab.metrics.scores import AnswerScores, TextScores, read_scores

from .format import ci_text, delta_text, machine_text, md_table, minutes_text, read_json
from .plan import ComparisonRun, EXAMPLES_FILE, EXAMPLE_CHARS, GenerateRun, PREPARED_DIR, RECORDS_DIR, StudentRun


QA_HEADER = ["variant", "posts sent", "tokens generated", "teacher tokens/s", "answers", "parsed", "parse rate",
             "kept posts", "QA pairs", "rejects by stage", "commonest reject reasons", "time", "machine"]
SELF_INSTRUCT_HEADER = ["variant", "requests sent", "tokens generated", "teacher tokens/s", "task blocks", "parsed",
                        "parse rate", "kept", "kept per request", "rejects by stage", "commonest reject reasons",
                        "time", "machine"]


def generate_section(generate_run: GenerateRun,
                     root: Path = RECORDS_DIR) -> tuple[list[str], list[tuple[str, dict]]]:
    """A generate run's section: per variant, what the teacher was sent and wrote, how much of it parsed and
    was kept and why the rest was not; then kept tasks (or QA posts) as the teacher wrote them. Returns the
    lines (none while no variant has a record) and the (run, provenance) pairs for the Hardware section."""
    rows, recorded, teachers, examples, missing = [], [], set(), [], []
    qa = False
    for variant in generate_run.variants:
        folder = generate_run.run_dir(variant, root)
        provenance, stats = read_json(folder / "provenance.json"), read_json(folder / "stats.json")
        if provenance is None or stats is None:
            missing.append(variant)
            continue
        recorded.append((folder.name, provenance))
        config = load_yaml(folder / "config.yaml") if (folder / "config.yaml").exists() else {}
        teachers.add(provenance.get("models", {}).get("teacher") or config.get("teacher") or "?")
        qa = "moderation_qa" in stats
        cells = _qa_cells(stats["moderation_qa"]) if qa else _self_instruct_cells(stats.get("self_instruct", {}))
        rows.append([variant, *cells, minutes_text(provenance), machine_text(provenance.get("hardware", {}))])
        if shown := read_json(folder / EXAMPLES_FILE):
            examples.append((variant, shown))
    if not rows:
        return [], []
    lines = [f"## {generate_run.title}", "", f"Data: {generate_run.data}", "",
             *md_table(QA_HEADER if qa else SELF_INSTRUCT_HEADER, rows), ""]
    if qa:
        lines += ["Answers: the posts the teacher answered (not refused). Parsed: the answers read into questions, "
                  "answers and a verdict per category (JSON or labelled lines), so the parse rate is the share a "
                  "reader could use; kept posts also passed the data gates. Teacher tokens/s: the tokens generated "
                  "over the QA build's seconds; requests answered from an earlier sitting's cache cost neither.", ""]
    else:
        lines += ["Task blocks: the instruction/input/output blocks the teacher's answers held (kept + rejected, "
                  "less the requests the teacher refused; an empty answer counts as one). Parsed: the blocks past "
                  "the parse stage, which also applies Alpaca's filters (length, blacklisted words), so the parse "
                  "rate is the share that came out a usable task before the novelty filter and the data gates. "
                  "Teacher tokens/s: the tokens generated over the self-instruct build's seconds; requests answered "
                  "from an earlier sitting's cache cost neither.", ""]
    if small := sorted(t for t in teachers if "smollm2" in t.lower()):
        lines += [f"The teacher is SmolLM2-135M-Instruct ({', '.join(f'`{t}`' for t in small)}): these are a "
                  f"135M-parameter model's {'answers' if qa else 'tasks'}, a teacher small enough for a CPU, not "
                  "what a large teacher writes.", ""]
    for variant, shown in examples:
        what = "kept posts" if qa else "kept tasks"
        lines += [f"{len(shown)} {what} of {variant}, drawn at random, as the teacher wrote them (a field "
                  f"longer than {EXAMPLE_CHARS} characters is cut, ending in …):", ""]
        if qa:
            lines += md_table(["#", "post", "questions and answers", "verdicts"],
                            [[str(i), _example_cell(e.get("text", "")),
                              _example_cell("\n".join(f"Q: {q.get('question', '')} A: {q.get('answer', '')}"
                                                       for q in e.get("qa", []))),
                              _example_cell("\n".join(f"{v.get('category')}: {'yes' if v.get('violates') else 'no'}"
                                                       for v in e.get("verdicts", [])))]
                             for i, e in enumerate(shown, 1)])
        else:
            lines += md_table(["#", "instruction", "input", "output"],
                            [[str(i), *[_example_cell(e.get(k, "")) for k in ("instruction", "input", "output")]]
                             for i, e in enumerate(shown, 1)])
        lines.append("")
    if missing:
        lines += [f"Not run yet: {', '.join(missing)}.", ""]
    commands = [line for variant in generate_run.variants for line in generate_run.shell_lines(variant)]
    lines += ["Commands:", "", "```bash", *commands, "```", ""]
    return lines, recorded


def _qa_cells(qa: dict) -> list[str]:
    """The numbers of a moderation_qa entry of stats.json, in QA_HEADER's order (after the variant)."""
    by_stage = qa.get("rejected_by_stage", {})
    answers = qa.get("posts", 0) - by_stage.get("teacher", 0)
    parsed = answers - by_stage.get("parse", 0)
    sent, cached, tokens, seconds = (qa.get(k, 0) for k in ("sent", "cached", "completion_tokens", "seconds"))
    reasons = sorted(qa.get("reject_reasons", {}).items(), key=lambda item: -item[1])[:3]
    return [f"{sent:,}" + (f" (+{cached:,} cached)" if cached else ""), f"{tokens:,}",
            f"{tokens / seconds:.1f}" if seconds else "–", f"{answers:,}", f"{parsed:,}",
            f"{parsed / answers:.1%}" if answers else "–", f"{qa.get('kept_posts', 0):,}", f"{qa.get('pairs', 0):,}",
            ", ".join(f"{stage} {n:,}" for stage, n in by_stage.items()) or "none",
            "; ".join(f"{_example_cell(reason)} ({n:,})" for reason, n in reasons) or "none"]


TEXT_METRICS = {"bleu": ("BLEU", 2), "rouge_l_f1": ("ROUGE-L", 3), "bertscore_f1": ("BERTScore", 3)}


def student_section(student_run: StudentRun,
                    root: Path = RECORDS_DIR) -> tuple[list[str], list[tuple[str, dict]]]:
    """A student run's section: per variant what it was trained on, its scores on the held-aside records
    with paired deltas against the first variant, and its times; then a few held-aside records with every
    variant's answer. Returns the lines (none before it is scored) and the (run, provenance) pairs."""
    folder = root / student_run.name
    scores, scored = read_json(folder / "scores" / "scores.json"), read_json(folder / "scores" / "provenance.json")
    if scores is None or scored is None:
        return [], []
    recorded = [(f"{student_run.name} scores", scored)]
    text = TextScores(scores)
    baseline = text.baseline
    deltas = {(c["run"], c["metric"]): c for c in text.comparisons}
    header = ["variant", "trained on", *[label for label, _ in TEXT_METRICS.values()],
              *[f"Δ {label} vs {baseline}" for label, _ in TEXT_METRICS.values()], "empty answers", "train time",
              "inference time"]
    rows = []
    for entry in text.runs:
        variant = entry["name"]
        train = read_json(folder / variant / "student" / "provenance.json")
        answered = read_json(folder / variant / "inference" / "provenance.json")
        for what, provenance in (("student", train), ("inference", answered)):
            if provenance:
                recorded.append((f"{student_run.name} {variant} {what}", provenance))
        if train:
            summary = train.get("notes", {}).get("summary", {})
            config = load_yaml(folder / variant / "student" / "config.yaml")
            data = ", ".join(Path(d).name for d in config.get("data") or []) or "?"
            if "pairs" in summary:  # a preference student: its pairs and the steps they made
                epochs = config.get("num_train_epochs")
                trained = (f"{summary['pairs']:,} pairs of {data} ({summary.get('steps', '?')} steps, "
                           f"{epochs if not isinstance(epochs, float) else f'{epochs:g}'} epochs)")
            else:
                trained = f"{summary.get('examples', 0):,} examples of {data}"
        else:
            trained = f"nothing: {student_run.base} as it is"
        rows.append([variant, trained,
                     *[ci_text(entry.get(m), digits) for m, (_, digits) in TEXT_METRICS.items()],
                     *[delta_text(deltas.get((variant, m)), digits) if variant != baseline else "–"
                       for m, (_, digits) in TEXT_METRICS.items()],
                     f"{entry.get('empty_predictions', 0):,}", minutes_text(train) if train else "–",
                     minutes_text(answered) if answered else "–"])
    lines = [f"## {student_run.title}", "", f"Data: {student_run.data}", "", *_prepared_lines(folder),
             f"{scores.get('examples', 0):,} held-aside records, every variant answering the same ones; BLEU "
             f"(sacrebleu, {scores.get('bleu_signature', '')}), ROUGE-L F1 and BERTScore F1 "
             f"({scores.get('bertscore_model', '')}, layer {scores.get('bertscore_num_layers', '')}), each with "
             f"a bootstrap 95% interval; Δ is the paired difference against {baseline} on the same records, * where "
             "its interval excludes zero.", "", *md_table(header, rows), ""]
    if text.judge:
        lines += _judge_lines(text)
    if shown := read_json(folder / EXAMPLES_FILE):
        lines += [f"{len(shown)} held-aside records drawn at random, with every variant's answer as written "
                  f"(cut at {EXAMPLE_CHARS} characters):", ""]
        lines += md_table(["#", "instruction", "input", "reference", *student_run.variants],
                        [[str(i), *[_example_cell(e.get(k, "")) for k in ("instruction", "input", "reference")],
                          *[_example_cell(e.get("answers", {}).get(v, "")) for v in student_run.variants]]
                         for i, e in enumerate(shown, 1)])
        lines.append("")
    commands = [shlex.join(c) for c in student_run.prepare]
    commands += [shlex.join(c) for v in student_run.variants for c in student_run.commands(v)]
    lines += ["Commands:", "", "```bash", *commands, shlex.join(student_run.score_command()), "```", ""]
    return lines, recorded


def _judge_lines(text: TextScores) -> list[str]:
    """The judge's table: each variant's mean score, its paired difference and its pairwise win rate against
    the first variant (both orders; a win only when both orders agree, ties half)."""
    judge, baseline = text.judge, text.baseline
    deltas = {d["run"]: d for d in judge.get("score_deltas", [])}
    wins = {w["run"]: w for w in judge.get("win_rates", [])}
    by = judge.get("judged_by", {})
    rows = []
    for entry in judge["runs"]:
        name, win = entry["name"], wins.get(entry["name"])
        rows.append([name, ci_text(entry["mean_score"], 2), f"{entry['rated']:,} / {entry['unreadable']:,}",
                     delta_text(deltas.get(name), 2) if name in deltas else "–",
                     ci_text(win["win_rate"], 3) if win else "–",
                     f"{win['wins']:,} / {win['losses']:,} / {win['ties']:,} ({win['identical']:,} identical)"
                     if win else "–", f"{win['unreadable']:,}" if win else "–",
                     f"{win['position_bias_rate']:.1%}" if win and win["position_bias_rate"] is not None else "–"])
    header = ["variant", f"judge score (1-{by.get('scale', '?')})", "rated / unreadable",
              f"Δ judge score vs {baseline}", f"win rate vs {baseline}", "wins / losses / ties", "unreadable pairs",
              "position bias"]
    return [f"Judged by `{by.get('judge', '?')}` (rubric {by.get('rubric', '?')}; pairwise "
            f"{by.get('pairwise_rubric', '?')}; greedy): each answer scored alone (the mean, bootstrap 95% "
            "interval; Δ paired over the records both answers have a readable score for), and each variant's answer "
            f"against {baseline}'s asked in both orders: a win only where both orders agree, a tie counted half, "
            "the same answer twice a tie without asking. Position bias: the share of pairs whose two verdicts "
            "followed the position instead of the answer.", "", *md_table(header, rows), ""]


def _prepared_lines(folder: Path) -> list[str]:
    """What the run's prepared data holds where a prepare step judged preference pairs: how many, what was
    dropped and why, and how often the judge put the dataset's own answer above the model's."""
    lines = []
    for stats_path in sorted((folder / PREPARED_DIR).glob("*/stats.json")):
        prefs = read_json(stats_path).get("preferences")
        if not prefs:
            continue
        by = prefs.get("judged_by", {})
        reasons = "; ".join(f"{reason} {n:,}" for reason, n in prefs.get("drop_reasons", {}).items()) or "none"
        means = ", ".join(f"{source} {score:.2f}" for source, score in prefs.get("mean_score_by_source", {}).items())
        unreadable = (f"unreadable comparisons {prefs.get('unreadable_comparisons', 0):,} of "
                      f"{prefs.get('comparisons', 0):,}" if "comparisons" in prefs
                      else f"unreadable verdicts {prefs.get('unreadable_verdicts', 0):,}")
        lines += [f"Preference pairs ({stats_path.parent.name}): {prefs.get('instructions', 0):,} instructions, "
                  f"{prefs.get('candidates', 0):,} answers judged by `{by.get('judge', '?')}` (rubric "
                  f"{by.get('rubric', '?')}), {prefs.get('pairs', 0):,} pairs kept, {prefs.get('dropped', 0):,} "
                  f"dropped ({reasons}); {unreadable}."
                  + (f" Mean score by source: {means}." if means else ""), ""]
        if "reference_scored_above_every_answer" in prefs:
            lines += [f"The judge scored the dataset's own answer above the model's in "
                      f"{prefs['reference_scored_above_every_answer']:.1%} of {prefs['reference_comparisons']:,} "
                      "instructions with both scored: its agreement with the ordering expected where the dataset's "
                      "answers come from a far stronger writer than the model, a measure of how far this judge can "
                      "be trusted.", ""]
        if "reference_won_against_every_answer" in prefs:
            lines += [f"The dataset's own answer won against every model answer, in both orders, in "
                      f"{prefs['reference_won_against_every_answer']:.1%} of {prefs['reference_comparisons']:,} "
                      "instructions with every comparison readable: the judge's agreement with the ordering "
                      "expected where the dataset's answers come from a far stronger writer than the model.", ""]
    return lines


def comparison_section(comparison: ComparisonRun,
                       root: Path = RECORDS_DIR) -> tuple[list[str], list[tuple[str, dict]]]:
    """A comparison's section: one row per system on the same test rows (each variant; its k-shot
    baselines, mean ± std over seeds; the TF-IDF baseline an encoder variant fitted), then F1 per label.
    Returns the lines (none before a variant is scored) and the (run, provenance) pairs."""
    from tunelab.metrics.classification import headline

    rows, per_label, recorded, missing, labels = [], [], [], [], []
    numbers: dict[str, dict] = {}  # system -> its headline means, for the readout against the references
    tfidf_shown, single_label = False, False
    for variant in comparison.variants:
        folder = comparison.scores_dir(variant, root)
        scores, scored = read_json(folder / "scores.json"), read_json(folder / "provenance.json")
        if scores is None or scored is None:
            missing.append(variant)
            continue
        provenances = [(command, read_json(Path(command[command.index("--output_dir") + 1]) / "provenance.json"))
                       for command in comparison.commands(variant, root)]
        recorded += [(f"{comparison.name} {variant} {Path(c[c.index('--output_dir') + 1]).name}", p)
                     for c, p in provenances if p]
        answers = isinstance(read_scores(scores), AnswerScores)
        main = headline(scores)
        labels = labels or list(main["f1"])
        single_label = single_label or scores.get("problem_type") == "single_label"
        # k-shot baselines are inference runs of their own (--shots K): timed on their rows, not the variant's
        shots_of = {id(c): c[c.index("--shots") + 1] if "--shots" in c else None for c, _ in provenances}
        taken = " + ".join(minutes_text(p) for c, p in provenances if p and shots_of[id(c)] is None)
        rows.append(_system_row(variant, "in words" if answers else "classifier scores", scores.get("examples"),
                                main, None, scores.get("refusal_rate") if answers else None,
                                scores.get("unparseable_rate") if answers else None, taken))
        per_label.append((variant, main["f1"], None))
        numbers[variant] = main
        for k, entry in (scores.get("baselines", {}).get("by_shots") or {}).items():
            mean, std = entry["mean"], entry["std"]
            seeds = len(entry["runs"])
            name = f"{variant}, {k}-shot ({seeds} seed{'s' if seeds > 1 else ''})"
            runs_taken = [p["seconds"] for c, p in provenances if p and shots_of[id(c)] == str(k) and p.get("seconds")]
            k_taken = (f"{sum(runs_taken) / 60:.1f} min over {len(runs_taken)} run{'s' if len(runs_taken) > 1 else ''}"
                       if runs_taken else "–")
            rows.append(_system_row(name, "in words", scores["baselines"].get("examples"), mean["refusals_as_wrong"],
                                    std["refusals_as_wrong"], mean.get("refusal_rate"), mean.get("unparseable_rate"),
                                    k_taken, std.get("refusal_rate"), std.get("unparseable_rate")))
            per_label.append((name, mean["refusals_as_wrong"]["f1"], std["refusals_as_wrong"]["f1"]))
            numbers[name] = mean["refusals_as_wrong"]
        if (tfidf := scores.get("tfidf_baseline")) and not tfidf_shown:
            tfidf_shown = True
            name = f"TF-IDF + logistic regression (fitted on {variant}'s training rows)"
            rows.append(_system_row(name, "classifier scores", tfidf.get("examples", scores.get("examples")),
                                    headline(tfidf), None, None, None, "(in the evaluate time above)"))
            per_label.append((name, headline(tfidf)["f1"], None))
            numbers[TFIDF] = headline(tfidf)
    if not rows:
        return [], []
    header = ["system", "answers", "test rows", "accuracy" if single_label else "subset accuracy", "micro-F1", "macro-F1", "mean ROC-AUC", "mean PR-AUC",
              "refusal rate", "unparseable rate", "time (each command)"]
    lines = [f"## {comparison.title}", "", f"Data: {comparison.data}", "",
             "Answers in words are parsed into labels; a refused or unparseable answer counts as wrong (every "
             "label missed). ROC-AUC and PR-AUC of answers in words come from the label tokens' probabilities "
             "(inference.py --label_probs), of classifiers from their scores. k-shot rows: mean ± standard "
             "deviation over seeds, each seed drawing its own solved examples from the training rows.", "",
             *md_table(header, rows), ""]
    lines += ["F1 per label:", ""]
    lines += md_table(["system", *labels], [[name, *[_mean_std(f1.get(label), (std or {}).get(label)) for label in labels]]
                                          for name, f1, std in per_label])
    lines.append("")
    lines += _readout(numbers, [r for r in comparison.references if r in numbers] + ([TFIDF] if TFIDF in numbers else []))
    if comparison.studies:
        lines += ["Reported in the original studies (../shared/studies/; other models, data and splits, so for "
                  "orientation, not a like-for-like comparison):", "", *[f"- {s}" for s in comparison.studies], ""]
    lines += [f"Note: {n}" for n in comparison.notes] + ([""] if comparison.notes else [])
    if missing:
        lines += [f"Not run yet: {', '.join(missing)}.", ""]
    commands = [shlex.join(c) for c in comparison.prepare]
    commands += [shlex.join(c) for v in comparison.variants for c in comparison.commands(v)]
    lines += ["Commands:", "", "```bash", *commands, "```", ""]
    return lines, recorded


TFIDF = "TF-IDF"
READOUT_METRICS = {"accuracy": "accuracy", "subset_accuracy": "subset accuracy", "micro_f1": "micro-F1",
                   "macro_f1": "macro-F1", "mean_roc_auc": "mean ROC-AUC", "mean_pr_auc": "mean PR-AUC"}


def _readout(numbers: dict[str, dict], references: list[str]) -> list[str]:
    """Each other system against the references, metric by metric, in words: where it wins and where it
    loses (a loss to a simpler model is a finding, said as plainly as a win)."""
    if not references:
        return []
    lines = [f"Read against {' and '.join(references)} (the means above; on a test set this small a few "
             "hundredths can be chance, so these are readings, not tests):", ""]
    for system, own in numbers.items():
        if system in references:
            continue
        losses, wins = [], []
        for reference in references:
            theirs = numbers[reference]
            lost = [f"{label} ({own[m]:.3f} vs {theirs[m]:.3f})" for m, label in READOUT_METRICS.items()
                    if own.get(m) is not None and theirs.get(m) is not None and own[m] < theirs[m]]
            won = [label for m, label in READOUT_METRICS.items()
                   if own.get(m) is not None and theirs.get(m) is not None and own[m] > theirs[m]]
            if lost:
                losses.append(f"loses to {reference} on {', '.join(lost)}")
            if won:
                wins.append(f"beats {reference} on {', '.join(won)}")
        lines.append(f"- {system}: " + ("; ".join(losses + wins) or "level with every reference") + ".")
    for system, own in numbers.items():
        if never := [label for label, f1 in (own.get("f1") or {}).items() if f1 == 0]:
            lines.append(f"- {system} never finds {', '.join(never)} (F1 0).")
    return lines + [""]


def _system_row(name: str, answers: str, examples, mean: dict, std: dict | None, refusal, unparseable, minutes: str,
                refusal_std=None, unparseable_std=None) -> list:
    """One system's row of a comparison: its headline numbers (mean ± std where `std` is given)."""
    std = std or {}
    main = "accuracy" if "accuracy" in mean else "subset_accuracy"
    return [name, answers, f"{examples:,}" if isinstance(examples, int) else "?",
            *[_mean_std(mean.get(k), std.get(k)) for k in (main, "micro_f1", "macro_f1", "mean_roc_auc", "mean_pr_auc")],
            _mean_std(refusal, refusal_std), _mean_std(unparseable, unparseable_std), minutes]


def _mean_std(mean, std) -> str:
    if mean is None:
        return "–"
    return f"{mean:.3f}" if std is None else f"{mean:.3f} ± {std:.3f}"


def _self_instruct_cells(si: dict) -> list[str]:
    """The numbers of a self_instruct entry of stats.json, in generate_section's column order."""
    kept, by_stage = si.get("kept", 0), si.get("rejected_by_stage", {})
    # a refused request held no block; a parse reject is a block that did not make a task
    blocks = kept + si.get("rejected", 0) - by_stage.get("teacher", 0)
    parsed = blocks - by_stage.get("parse", 0)
    sent, cached, tokens, seconds = (si.get(k, 0) for k in ("sent", "cached", "completion_tokens", "seconds"))
    requests = si.get("requests", sent)
    reasons = sorted(si.get("reject_reasons", {}).items(), key=lambda item: -item[1])[:3]
    return [f"{sent:,}" + (f" (+{cached:,} cached)" if cached else ""), f"{tokens:,}",
            f"{tokens / seconds:.1f}" if seconds else "–", f"{blocks:,}", f"{parsed:,}",
            f"{parsed / blocks:.1%}" if blocks else "–", f"{kept:,}", f"{kept / requests:.2f}" if requests else "–",
            ", ".join(f"{stage} {n:,}" for stage, n in by_stage.items()) or "none",
            "; ".join(f"{_example_cell(reason)} ({n:,})" for reason, n in reasons) or "none"]


def _example_cell(text: str) -> str:
    """Teacher text as one table cell, readable in the file and rendered: cut at EXAMPLE_CHARS, markup shown
    as text, line breaks kept (md_table escapes pipes)."""
    text = str(text).strip()
    if not text:
        return "–"
    if len(text) > EXAMPLE_CHARS:
        text = text[:EXAMPLE_CHARS].rstrip() + " …"
    text = text.replace("<", "&lt;")
    return "<br>".join(line.strip() for line in text.splitlines() if line.strip())


def bench_section(bench: Path, heading: str | None = None, ran_elsewhere: set[str] = frozenset()) -> list[str]:
    """The benchmark suite's summary (bench/results.md, written by `make bench[-full]` beside results.json) under
    a heading of this file, and each benchmark it skipped, the GPU checks where there is no GPU, with
    the suite's reason (unless `ran_elsewhere`: the GPU checks' file has it). `heading` names another run
    of the suite (the GPU checks' file)."""
    summary = bench.with_suffix(".md")
    if not summary.exists():
        return []
    body = summary.read_text(encoding="utf-8").splitlines()
    if body and body[0].startswith("# "):
        body = body[1:]
    while body and not body[-1].strip():
        body.pop()
    recorded = json.loads(bench.read_text(encoding="utf-8"))
    target = "make bench-full" if recorded.get("mode") == "full" else "make bench"
    lines = [f"## {heading or f'Speed (`{target}`)'}", "", f"Copied from `bench/{summary.name}` (ratios are against a "
             "baseline measured in the same run):", *body, ""]
    entries = recorded.get("benchmarks", [])
    skipped = [f"- {e['name']} ({e.get('compares', '')}): not run: {e.get('reason', '')}."
               if e["name"] not in ran_elsewhere else f"- {e['name']}: run on a GPU machine, below."
               for e in entries if e.get("status") == "skipped"]
    if skipped:
        lines += ["Not run on this machine:", "", *skipped, ""]
    return lines
