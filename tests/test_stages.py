"""Each stage of the demo through its real entry point, on tiny models, chained as the demo chains them."""

import json
import subprocess
import sys

import pytest

from fakes import CannedTeacher, numbered_answer
from tunelab.stages import evaluate, finetune, generate, infer
from tunelab.teachers import factory

FAST_TRAIN = ["--max_steps", "2", "--logging_steps", "1", "--save_strategy", "no", "--report_to", "none",
              "--activation_checkpointing", "false"]


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("pipeline")


@pytest.fixture(scope="session")
def generated(workdir, tiny_llama):
    out = workdir / "generate"
    stats = generate.generate(["--config", "demo", "--output_dir", str(out), "--max_requests", "2",
                               "--max_new_tokens", "32"])
    return out, stats


@pytest.fixture(scope="session")
def student(workdir, generated):
    out = workdir / "student"
    summary = finetune.finetune(["--config", "demo_student", "--output_dir", str(out), "--data",
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
    assert set(provenance["templates"]) == {"self_instruct", "moderation_instruction", "moderation_qa", "alpaca_student"}
    assert provenance["inputs"]["seed_tasks"].split("sha256:")[1]
    assert "tiny random" in provenance["notes"]["teacher"]


def test_generate_resumes_from_its_cache(generated, tiny_llama):
    out, _ = generated
    stats = generate.generate(["--config", "demo", "--output_dir", str(out), "--max_requests", "2",
                               "--max_new_tokens", "32", "--tasks", "self_instruct", "--overwrite"])
    assert stats["self_instruct"]["sent"] == 0 and stats["self_instruct"]["cached"] == 2


def test_unfinished_generate_run_continues_without_overwrite(tmp_path, tiny_llama):
    out = tmp_path / "g"
    argv = ["--config", "demo", "--output_dir", str(out), "--tasks", "self_instruct", "--max_requests", "2",
            "--max_new_tokens", "16"]
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
    assert not list(out.glob("*.bin")) or [p.name for p in out.glob("*.bin")] == ["training_args.bin"]
    info = json.loads((out / "tunelab_model.json").read_text())
    assert info["tiny_random"] and info["base"] == "tunelab:tiny-llama"


def test_finetune_refuses_to_overwrite(student, capsys):
    out, _ = student
    assert finetune.main(["--config", "demo_student", "--output_dir", str(out), *FAST_TRAIN]) == 2
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


@pytest.mark.parametrize("script", ["generate/run.py", "finetune/train.py", "finetune/merge.py", "inference.py",
                                    "evaluate/score.py"])
def test_scripts_have_help(script, project_root):
    result = subprocess.run([sys.executable, str(project_root / script), "--help"], capture_output=True, text=True,
                            cwd=project_root, timeout=120)
    assert result.returncode == 0 and "--config" in result.stdout


def test_tunelab_command_lists_subcommands():
    from tunelab.cli import main

    assert main(["--help"]) == 0
    assert main(["nope"]) == 2


def test_demo_runs_every_stage_and_reports_where_outputs_went(in_tmp, tiny_llama, capsys):
    from tunelab.stages import demo

    rows = demo.demo(["--output_dir", "runs/d", "--quick"])
    assert [r["stage"] for r in rows] == ["generate", "generate", "generate", "finetune", "finetune", "inference", "evaluate",
                                          "evaluate"]
    assert all((in_tmp / r["where"]).exists() for r in rows)
    summary = json.loads((in_tmp / "runs/d/summary.json").read_text())
    assert "tiny random" in summary["note"]
    out = capsys.readouterr().out
    assert "know nothing" in out and "BERTScore" in out
    assert demo.main(["--output_dir", "runs/d"]) == 2  # an existing demo folder is not overwritten


def test_sft_with_no_room_for_responses_says_so(tmp_path, tiny_llama, capsys):
    code = finetune.main(["--config", "demo_student", "--output_dir", str(tmp_path / "s"), "--data",
                          "data/alpaca_sample.json", "--max_length", "16", "--max_examples", "4", *FAST_TRAIN])
    assert code == 2 and "raise --max_length" in capsys.readouterr().err


def test_truncated_training_data_is_named_and_the_existing_model_survives(student, tmp_path, capsys):
    out, _ = student
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    bad = tmp_path / "bad.json"
    bad.write_text('[\n {"instruction": "Say hi.", "input": "", "output": "Hi."},\n {"instruction": "Say')
    assert finetune.main(["--config", "demo_student", "--output_dir", str(out), "--data", str(bad), "--overwrite",
                          *FAST_TRAIN]) == 2
    assert f"{bad}:3:" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_finetune_qlora_4bit_on_cpu(tmp_path, tiny_llama):
    summary = finetune.finetune(["--config", "demo_student", "--output_dir", str(tmp_path / "q"), "--quantization", "4bit",
                                 "--data", "data/alpaca_sample.json", "--max_examples", "8", *FAST_TRAIN])
    assert summary["steps"] == 2 and (tmp_path / "q/adapter_model.safetensors").exists()
    assert "quantization: 4bit" in (tmp_path / "q/config.yaml").read_text()
    assert finetune.main(["--config", "demo_classifier", "--output_dir", str(tmp_path / "c"), "--quantization", "4bit"]) == 2
