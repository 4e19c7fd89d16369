"""Each stage of the demo through its real entry point, on tiny models, chained as the demo chains them."""

import json
import shutil
import subprocess
import sys

import pytest

from fakes import JSON_QA, TINY_STUDENT_CONFIG, CannedTeacher, numbered_answer
from tunelab.stages import evaluate, finetune, generate, infer
from tunelab.teachers import factory

FAST_TRAIN = ["--max_steps", "2", "--logging_steps", "1", "--save_strategy", "no", "--report_to", "none",
              "--activation_checkpointing", "false"]
# The demo configs run SmolLM2; these tests check the stages' mechanics on the tiny random Llama.
TINY_TEACHER = ["--teacher", "tunelab:tiny-llama"]


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("pipeline")


@pytest.fixture(scope="session")
def generated(workdir, tiny_llama):
    out = workdir / "generate"
    stats = generate.generate(["--config", "demo", "--output_dir", str(out), "--max_requests", "2",
                               "--max_new_tokens", "32", *TINY_TEACHER])
    return out, stats


@pytest.fixture(scope="session")
def student(workdir, generated):
    out = workdir / "student"
    summary = finetune.finetune(["--config", TINY_STUDENT_CONFIG, "--output_dir", str(out), "--data",
                                 "data/alpaca_sample.json", str(generated[0] / "self_instruct.alpaca.json"),
                                 "--max_examples", "16", *FAST_TRAIN])
    return out, summary


@pytest.fixture(scope="session")
def classifier(workdir, generated):
    out = workdir / "classifier"
    summary = finetune.finetune(["--config", "demo_classifier", "--output_dir", str(out), "--data",
                                 str(generated[0] / "moderation_train.jsonl"), "--max_examples", "32",
                                 "--max_length", "32", *FAST_TRAIN])
    return out, summary


@pytest.fixture(scope="session")
def answers(workdir, student):
    out = workdir / "inference"
    summary = infer.infer(["--config", "demo", "--model", str(student[0]), "--output_dir", str(out), "--limit", "6",
                           "--max_new_tokens", "8"])
    return out, summary


def test_generate_builds_moderation_and_self_instruct(generated):
    out, stats = generated
    mod = stats["moderation"]
    assert mod["train"] > 0 and mod["test"] > 0
    for split in ("train", "test"):
        alpaca = json.loads((out / f"moderation_{split}.alpaca.json").read_text())
        chat = [json.loads(line) for line in (out / f"moderation_{split}.chat.jsonl").read_text().splitlines()]
        assert len(alpaca) == len(chat) == mod[split]
        assert chat[0]["messages"][-1]["content"] == alpaca[0]["output"]
    si = stats["self_instruct"]
    assert si["sent"] == 2 and si["kept"] + si["rejected"] >= 1
    assert (out / "self_instruct.rejects.jsonl").exists() and (out / "teacher_cache.jsonl").exists()
    provenance = json.loads((out / "provenance.json").read_text())
    assert set(provenance["templates"]) == {"self_instruct", "moderation_instruction", "moderation_qa_fewshot",
                                            "alpaca_student"}
    assert provenance["inputs"]["seed_tasks"].split("sha256:")[1]
    assert "tiny random" in provenance["notes"]["teacher"]


def test_generate_folder_has_a_dataset_card_with_counts(generated):
    """Before test_generate_resumes_from_its_cache reruns the folder with fewer tasks."""
    from huggingface_hub import DatasetCard

    out, stats = generated
    text = (out / "README.md").read_text()
    card = DatasetCard.load(out / "README.md")
    assert "tunelab" in card.data.tags and card.data.license == "unknown"
    for bad in ("None", "More Information Needed"):
        assert bad not in text
    mod, si = stats["moderation"], stats["self_instruct"]
    assert f"Kept: train {mod['train']}, test {mod['test']}." in text
    assert f"{si['kept']} tasks kept; {si['rejected']} rejected" in text
    for reason, count in si["reject_reasons"].items():
        assert f"| {reason} | {count} |" in text
    provenance = json.loads((out / "provenance.json").read_text())
    for name, digest in provenance["templates"].items():
        assert f"| {name} | {digest[7:19]} |" in text
    assert provenance["inputs"]["seed_tasks"].split("sha256:")[1] in text
    assert "`tunelab:tiny-llama`" in text and "tiny random" in text and "CC BY-SA 3.0" in text
    assert "| `moderation_train.alpaca.json` | alpaca: JSON array" in text and f"| {mod['train']} |" in text
    assert "## Limitations" in text and provenance["outputs"]["dataset_card"].endswith("README.md")


def test_generate_resumes_from_its_cache(generated, tiny_llama, tmp_path):
    out = tmp_path / "generate"
    shutil.copytree(generated[0], out)  # --overwrite replaces the folder's outputs; other tests read the original
    stats = generate.generate(["--config", "demo", "--output_dir", str(out), "--max_requests", "2",
                               "--max_new_tokens", "32", "--tasks", "self_instruct", "--overwrite", *TINY_TEACHER])
    assert stats["self_instruct"]["sent"] == 0 and stats["self_instruct"]["cached"] == 2


def test_unfinished_generate_run_continues_without_overwrite(tmp_path, tiny_llama):
    out = tmp_path / "g"
    argv = ["--config", "demo", "--output_dir", str(out), "--tasks", "self_instruct", "--max_requests", "2",
            "--max_new_tokens", "16", *TINY_TEACHER]
    first = generate.generate(argv)
    (out / "provenance.json").unlink()  # as if the run was killed before it finished
    again = generate.generate(argv)
    assert again["self_instruct"]["sent"] == 0 and again["self_instruct"]["cached"] == 2
    assert again["self_instruct"]["rejected"] == first["self_instruct"]["rejected"]
    assert generate.main(argv) == 2  # a finished run is not replaced without --overwrite


def test_self_instruct_keeps_parsed_tasks_with_provenance(tmp_path, monkeypatch):
    answer = numbered_answer(4, [
        ("Explain why the sky looks blue during the day.", "", "Sunlight scatters off air molecules."),
        ("Give three tips for staying healthy this winter.", "", "Sleep, eat well, move."),
        ("Explain why the sky looks blue during the daytime.", "", "Near duplicate of the first."),
    ])
    monkeypatch.setitem(factory.BACKENDS, "canned", lambda cfg: CannedTeacher([answer]))
    stats = generate.generate(["--config", "demo", "--output_dir", str(tmp_path / "g"), "--tasks", "self_instruct",
                               "--teacher_backend", "canned", "--max_requests", "1"])
    kept = json.loads((tmp_path / "g/self_instruct.alpaca.json").read_text())
    assert [k["instruction"] for k in kept] == ["Explain why the sky looks blue during the day.",
                                                "Give three tips for staying healthy this winter."]
    assert kept[0]["provenance"]["teacher"] == "canned" and len(kept[0]["provenance"]["seed_ids"]) == 3
    assert stats["self_instruct"]["reject_reasons"] == {"ROUGE-L > 0.7 vs an earlier task": 1}


def test_self_instruct_as_a_chat_request_reads_the_list_the_teacher_starts_itself(tmp_path, monkeypatch):
    """An instruction-tuned teacher gets the prompt as one user turn and answers with its own numbered list."""
    answer = "Here are more tasks:\n" + numbered_answer(1, [
        ("Explain why the sky looks blue during the day.", "", "Sunlight scatters off air molecules."),
        ("Give three tips for staying healthy this winter.", "", "Sleep, eat well, move.")]).replace(
        " Explain why", "1. Instruction: Explain why", 1)
    teacher = CannedTeacher([answer])
    seen = []
    original = teacher.generate_batch
    teacher.generate_batch = lambda requests, params: seen.extend(requests) or original(requests, params)
    monkeypatch.setitem(factory.BACKENDS, "canned", lambda cfg: teacher)
    stats = generate.generate(["--config", "demo", "--output_dir", str(tmp_path / "g"), "--tasks", "self_instruct",
                               "--teacher_backend", "canned", "--max_requests", "1", "--self_instruct_request", "chat"])
    assert seen and seen[0].prompt is None and seen[0].messages[0]["role"] == "user"
    assert "List of 20 tasks" in seen[0].messages[0]["content"]
    assert stats["self_instruct"]["kept"] == 2, stats["self_instruct"]["reject_reasons"]


def test_a_qa_answer_cut_open_by_the_length_limit_is_rejected_as_cut_off(tmp_path, monkeypatch):
    """A real small teacher often runs out of tokens inside its JSON: that is a length problem, and the reason
    says so (raise max_new_tokens), not a format one."""
    cut = 'Here is the JSON:\n```json\n{"qa": [{"question": "Who is targeted?", "answer": "No one'
    # JSON one key per line, as small teachers write it: not misread as labelled lines
    cut_lines = '{\n"qa": [\n{"question": "Who is targeted?",\n"answer": "No one'
    monkeypatch.setitem(factory.BACKENDS, "canned", lambda cfg: CannedTeacher([cut, cut_lines], finish_reason="length"))
    stats = generate.generate(["--config", "demo", "--output_dir", str(tmp_path / "g"), "--tasks", "moderation_qa",
                               "--teacher_backend", "canned", "--max_posts", "2", *JSON_QA])
    assert stats["moderation_qa"]["reject_reasons"] == {"cut off by the length limit": 2}


def test_a_labelled_lines_answer_is_cut_off_only_when_it_did_not_move_on(tmp_path, monkeypatch):
    """Few-shot lines: an answer the limit stopped before its Categories line is a length problem; one that
    skipped the line and went on to its next example is a format problem, whatever stopped it."""
    stopped = " Who is it for?\nAnswer 1: An editor.\nQuestion 2: Is it rude?\nAnswer 2: Ye"
    moved_on = " Who is it for?\nAnswer 1: An editor.\nReason: Rude.\n\nComment: \"next\"\nQuestion 1: Why?"
    monkeypatch.setitem(factory.BACKENDS, "canned",
                        lambda cfg: CannedTeacher([stopped, moved_on], finish_reason="length"))
    stats = generate.generate(["--config", "demo", "--output_dir", str(tmp_path / "g"), "--tasks", "moderation_qa",
                               "--teacher_backend", "canned", "--max_posts", "2"])
    assert stats["moderation_qa"]["reject_reasons"] == {"cut off by the length limit": 1, "no Categories line": 1}


def test_qa_as_a_completion_continues_the_few_shot_prompt_and_stops_at_the_blank_line(tmp_path, monkeypatch):
    """The few-shot template small teachers can finish: the request is the prompt itself, ending at
    'Question 1:', the answer is read from there, and the teacher stops at the blank line ending its block."""
    answer = " Who is it aimed at?\nAnswer 1: An editor.\nQuestion 2: Is it rude?\nAnswer 2: Yes.\nCategories: toxic, insult\nReason: Rude."
    teacher = CannedTeacher([answer])
    seen = []
    original = teacher.generate_batch
    teacher.generate_batch = lambda requests, params: seen.append((requests, params)) or original(requests, params)
    monkeypatch.setitem(factory.BACKENDS, "canned", lambda cfg: teacher)
    stats = generate.generate(["--config", "demo", "--output_dir", str(tmp_path / "g"), "--tasks", "moderation_qa",
                               "--teacher_backend", "canned", "--max_posts", "2", "--qa_questions", "2",
                               "--qa_template", "moderation_qa_fewshot", "--qa_request", "completion"])["moderation_qa"]
    requests, params = seen[0]
    assert requests[0].messages is None and requests[0].prompt.endswith("Question 1:") and "\n\n" in params.stop
    assert requests[0].prompt.count("Question 3:") == 0  # the worked examples show as many questions as asked
    assert stats["kept_posts"] == 2 and stats["pairs"] == 6, stats["reject_reasons"]
    record = json.loads((tmp_path / "g/moderation_qa.jsonl").read_text().splitlines()[0])
    assert record["qa"][0] == {"question": "Who is it aimed at?", "answer": "An editor."}
    assert record["labels"] == ["toxic", "insult"]


def test_malformed_corpus_is_named_and_existing_outputs_survive(tmp_path, capsys):
    out = tmp_path / "g"
    generate.generate(["--config", "demo", "--output_dir", str(out), "--tasks", "moderation"])
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bad = tmp_path / "bad.csv"
    bad.write_text("comment_text,toxic,severe_toxic,obscene,threat,insult\nhello,0,0,0,0,0\n")
    assert generate.main(["--config", "demo", "--output_dir", str(out)]) == 2  # exists, no --overwrite
    assert generate.main(["--config", "demo", "--output_dir", str(out), "--tasks", "moderation",
                          "--corpus", str(bad), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:1: missing column(s) ['identity_hate']" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_finetune_student_saves_adapter_template_and_record(student):
    out, summary = student
    assert summary["steps"] == 2
    for name in ("adapter_model.safetensors", "adapter_config.json", "student_template.jinja2", "tunelab_model.json",
                 "config.yaml", "provenance.json", "tokenizer.json"):
        assert (out / name).exists(), name
    assert not list(out.glob("**/*.bin"))  # no pickle: not the weights, not the Trainer's arguments
    info = json.loads((out / "tunelab_model.json").read_text())
    assert info["tiny_random"] and info["base"] == "tunelab:tiny-llama"


def test_finetune_refuses_to_overwrite(student, capsys):
    out, _ = student
    assert finetune.main(["--config", TINY_STUDENT_CONFIG, "--data", "data/alpaca_sample.json", "--output_dir", str(out),
                          *FAST_TRAIN]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_finetune_classifier_on_real_minilm(classifier):
    out, summary = classifier
    assert summary["steps"] == 2
    info = json.loads((out / "tunelab_classifier.json").read_text())
    assert info["labels"] == ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"] and info["lora"]


def test_inference_writes_readable_rows_with_settings(answers):
    out, summary = answers
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == summary["examples"] == 6
    assert {"instruction", "input", "reference", "prediction", "decoding"} <= set(rows[0])
    assert rows[0]["decoding"]["max_new_tokens"] == 8 and rows[0]["adapter"]
    assert summary["tiny_random_model"]


def test_evaluate_text_scores(answers, workdir):
    scores = evaluate.score(["--config", "demo_text", "--predictions", str(answers[0] / "predictions.jsonl"),
                             "--output_dir", str(workdir / "scores_text")])
    assert scores["examples"] == 6
    assert 0 <= scores["bleu"] <= 100 and 0 <= scores["rouge_l_f1"] <= 1 and -1 <= scores["bertscore_f1"] <= 1
    assert scores["bleu_signature"].startswith("nrefs:1")
    per_example = (workdir / "scores_text/per_example.jsonl").read_text().splitlines()
    assert len(per_example) == 6


def test_evaluate_classifier_scores(classifier, generated, workdir):
    scores = evaluate.score(["--config", "demo_classifier", "--model", str(classifier[0]),
                             "--data", str(generated[0] / "moderation_test.jsonl"),
                             "--output_dir", str(workdir / "scores_cls")])
    assert set(scores["per_label"]) == {"toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"}
    assert all(0 <= v["f1"] <= 1 and (v["roc_auc"] is None or 0 <= v["roc_auc"] <= 1) for v in scores["per_label"].values())
    assert scores["examples"] == generated[1]["moderation"]["test"]


def test_empty_predictions_are_an_error_unless_allowed(tmp_path, capsys):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a", "prediction": "x", "reference": "x"}\n{"id": "b", "prediction": " ", "reference": "y"}\n')
    assert evaluate.main(["--task", "text", "--predictions", str(path), "--output_dir", str(tmp_path / "s")]) == 2
    assert f"{path}:2: record b: empty prediction" in capsys.readouterr().err


@pytest.mark.parametrize("script", ["generate/run.py", "finetune/train.py", "finetune/merge.py", "finetune/push.py",
                                    "inference.py", "evaluate/score.py"])
def test_scripts_have_help(script, project_root):
    result = subprocess.run([sys.executable, str(project_root / script), "--help"], capture_output=True, text=True,
                            cwd=project_root, timeout=120)
    assert result.returncode == 0 and "--config" in result.stdout


def test_tunelab_command_lists_subcommands():
    from tunelab.cli import main

    assert main(["--help"]) == 0
    assert main(["nope"]) == 2


def test_demo_refuses_an_existing_folder_and_contradicting_flags(in_tmp):
    # the demo's whole run, from an installed wheel, is tests/test_wheel.py's
    from tunelab.stages import demo

    (in_tmp / "runs/d").mkdir(parents=True)
    (in_tmp / "runs/d/summary.json").write_text("{}")
    assert demo.main(["--output_dir", "runs/d"]) == 2  # an existing demo folder is not overwritten
    assert demo.main(["--output_dir", "runs/e", "--quick", "--full"]) == 2 and not (in_tmp / "runs/e").exists()


def test_sft_with_no_room_for_responses_says_so(tmp_path, tiny_llama, capsys):
    code = finetune.main(["--config", TINY_STUDENT_CONFIG, "--output_dir", str(tmp_path / "s"), "--data",
                          "data/alpaca_sample.json", "--max_length", "16", "--max_examples", "4", *FAST_TRAIN])
    assert code == 2 and "raise --max_length" in capsys.readouterr().err


def test_truncated_training_data_is_named_and_the_existing_model_survives(student, tmp_path, capsys):
    out, _ = student
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    bad = tmp_path / "bad.json"
    bad.write_text('[\n {"instruction": "Say hi.", "input": "", "output": "Hi."},\n {"instruction": "Say')
    assert finetune.main(["--config", TINY_STUDENT_CONFIG, "--output_dir", str(out), "--data", str(bad), "--overwrite",
                          *FAST_TRAIN]) == 2
    assert f"{bad}:3:" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_finetune_qlora_4bit_on_cpu(tmp_path, tiny_llama):
    summary = finetune.finetune(["--config", TINY_STUDENT_CONFIG, "--output_dir", str(tmp_path / "q"), "--quantization", "4bit",
                                 "--data", "data/alpaca_sample.json", "--max_examples", "8", *FAST_TRAIN])
    assert summary["steps"] == 2 and (tmp_path / "q/adapter_model.safetensors").exists()
    assert "quantization: 4bit" in (tmp_path / "q/config.yaml").read_text()
    assert finetune.main(["--config", "demo_classifier", "--output_dir", str(tmp_path / "c"), "--quantization", "4bit"]) == 2


# ---- cards: README.md in every model folder and generate folder, and what push uploads ----------------

NOT_IN_A_CARD = ("None", "More Information Needed", ".cache/tunelab", "site-packages", "tunelab-cache")


def card_text(folder, tunelab_cache, *resolved_paths):
    """The folder's README.md, checked for what a trainer's card or a resolved path would leave in it."""
    text = (folder / "README.md").read_text()
    for bad in (*NOT_IN_A_CARD, str(tunelab_cache), *map(str, resolved_paths)):
        assert bad not in text, bad
    return text


def input_hashes(folder):
    """(file name, sha256) of every input file the run's provenance.json lists."""
    found = []
    for value in json.loads((folder / "provenance.json").read_text())["inputs"].values():
        for part in value.split(" + "):
            if " sha256:" in part:
                path, digest = part.rsplit(" sha256:", 1)
                found.append((path.rsplit("/", 1)[-1], digest))
    return found


def test_student_adapter_card_names_the_base_data_settings_and_loss(student, tunelab_cache, tiny_llama):
    from huggingface_hub import ModelCard

    out, summary = student
    text = card_text(out, tunelab_cache, tiny_llama)
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "peft" and card.data.pipeline_tag == "text-generation"
    assert "tunelab" in card.data.tags and card.data.base_model is None  # a random built-in is not on the Hub
    assert "`tunelab:tiny-llama`: a tiny random Llama" in text and "knows nothing" in text
    files = input_hashes(out)
    assert any(name == "alpaca_sample.json" for name, _ in files)
    for name, digest in files:
        assert name in text and digest in text
    assert "| 320 |" in text  # records in the shipped Alpaca sample
    assert "| LoRA r | 8 |" in text and "| LoRA alpha | 16 |" in text and "alpaca_student (version " in text
    assert f"| final logged loss | {summary['last_loss']:.4g} |" in text
    assert "## Limitations" in text and "CC BY-NC 4.0" in text


def test_classifier_card_holds_labels_data_and_eval_scores(classifier, generated, tunelab_cache, minilm):
    from huggingface_hub import ModelCard

    out, summary = classifier
    text = card_text(out, tunelab_cache, minilm)
    card = ModelCard.load(out / "README.md")
    assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2" and card.data.library_name == "peft"
    assert card.data.pipeline_tag == "text-classification" and "`tunelab:minilm`" in text
    for name, digest in input_hashes(out):
        assert name in text and digest in text
    assert "moderation_train.jsonl" in text and "dataset card beside it" in text
    assert "identity_hate" in text and f"| optimizer steps | {summary['steps']} |" in text
    scores = {k: v for k, v in summary["eval"].items() if k in ("eval_loss", "eval_micro_f1", "eval_macro_f1")}
    assert len(scores) == 3  # the demo classifier holds out an eval split
    for metric, value in scores.items():
        assert f"| {metric.removeprefix('eval_')} | {value:.4g} |" in text


def fake_hub(monkeypatch):
    """HfApi's create_repo / upload_folder faked; returns the uploads, each with the text files it would send."""
    import huggingface_hub
    from pathlib import Path

    uploads = []

    def create_repo(self, repo_id, **kwargs):
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, **kwargs):
        folder = Path(kwargs["folder_path"])
        kwargs["files"] = {str(p.relative_to(folder)): p.read_text() for p in folder.rglob("*")
                           if p.is_file() and p.suffix in (".md", ".json", ".yaml")}
        uploads.append(kwargs)

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    return uploads


def test_push_uploads_a_classifier_with_its_card_and_never_the_token(classifier, monkeypatch, capsys):
    from tunelab.stages import push

    token = "hf_TestTokenThatMustNotLeak456"
    monkeypatch.setenv("HF_TOKEN", token)
    uploads = fake_hub(monkeypatch)
    out, _ = classifier
    before = (out / "README.md").read_text()
    assert push.main(["--model", str(out), "--hub_repo_id", "me/classifier"]) == 0
    (upload,) = uploads
    assert upload["token"] == token and upload["folder_path"] == str(out) and "checkpoint-*" in upload["ignore_patterns"]
    assert upload["files"]["README.md"] == before  # a tunelab card is uploaded as it is
    captured = capsys.readouterr()
    for text in [captured.out, captured.err, *upload["files"].values()]:
        assert token not in text
    monkeypatch.delenv("HF_TOKEN")
    assert push.main(["--model", str(out), "--hub_repo_id", "me/classifier"]) == 2
    assert "HF_TOKEN" in capsys.readouterr().err


def test_push_replaces_a_trainers_readme_with_a_card(classifier, tmp_path, monkeypatch, tunelab_cache):
    import shutil

    from tunelab.stages import push

    monkeypatch.setenv("HF_TOKEN", "hf_placeholder_value")
    uploads = fake_hub(monkeypatch)
    folder = tmp_path / "old"
    shutil.copytree(classifier[0], folder)
    (folder / "README.md").write_text("---\nlibrary_name: peft\n---\n# Model Card\n\nMore Information Needed\n")
    assert push.main(["--model", str(folder), "--hub_repo_id", "me/old"]) == 0
    text = card_text(folder, tunelab_cache)
    assert uploads[0]["files"]["README.md"] == text and "`tunelab:minilm`" in text and "moderation_train.jsonl" in text
    assert push.main(["--model", str(tmp_path), "--hub_repo_id", "me/old"]) == 2  # not a model folder


def test_finetune_leaves_pushing_to_the_push_command(tmp_path, capsys):
    assert finetune.main(["--config", TINY_STUDENT_CONFIG, "--output_dir", str(tmp_path / "p"), "--push_to_hub"]) == 2
    assert "finetune/push.py" in capsys.readouterr().err and not (tmp_path / "p").exists()
