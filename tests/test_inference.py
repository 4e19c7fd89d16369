"""inference.py: decoding sweeps, resumable files, server backends, batching that does not change answers."""

import json

import pytest
import torch

from tunelab.config import parse_config
from tunelab.paths import PROJECT_ROOT
from tunelab.errors import ConfigError, OutputExistsError, RecordError
from tunelab.inference import outputs
from tunelab.inference.settings import expand_grid
from tunelab.stages import finetune, infer, merge
from tunelab.teachers.mock_server import MockServer
from fakes import TINY_STUDENT_CONFIG

QUICK = ["--model", "tunelab:tiny-llama", "--limit", "5", "--max_new_tokens", "6"]
SWEEP = ["--temperature", "0", "0.7", "--top_k", "0", "50", "--num_beams", "1", "2"]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy CPU OpenMP's spinning workers made
    this module about 3x slower (74 s with 2 threads, 26 s with 1, on 2 shared cores)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


DATA_IDS = [r["id"] for r in json.loads((PROJECT_ROOT / "data/alpaca_heldout.json").read_text())[:5]]


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def grid(*argv):
    (cfg,), _ = parse_config((infer.InferenceConfig,), ["--model", "m", *argv])
    return expand_grid(cfg)


def test_grid_collapses_greedy_duplicates_and_skips_sampled_beams():
    settings, skipped = grid(*SWEEP)
    assert [s.name for s in settings] == ["t0_k0_b1", "t0_k0_b2", "t0.7_k0_b1", "t0.7_k50_b1"]
    reasons = sorted(s["reason"].split(":")[0] for s in skipped)
    assert reasons == ["greedy decoding ignores top_k and top_p"] * 2 + ["temperature > 0 with num_beams > 1"] * 2
    settings, _ = grid("--temperature", "0.7", "--top_p", "0.9", "--repetition_penalty", "1.2",
                       "--max_new_tokens", "8", "16")
    assert [s.name for s in settings] == ["t0.7_k0_b1_p0.9_rp1.2_n8", "t0.7_k0_b1_p0.9_rp1.2_n16"]
    with pytest.raises(ConfigError, match="beam search does not sample"):
        grid("--temperature", "0.7", "--num_beams", "4")
    with pytest.raises(ConfigError, match="top_p must be in"):
        grid("--top_p", "0")


def test_sweep_writes_one_file_per_setting_with_the_setting_in_every_row(tmp_path):
    out = tmp_path / "sweep"
    summary = infer.infer([*QUICK, *SWEEP, "--output_dir", str(out)])
    index = json.loads((out / "sweep.json").read_text())
    names = [s["name"] for s in index["settings"]]
    assert sorted(p.stem for p in (out / "predictions").glob("*.jsonl")) == sorted(names)
    assert not (out / "predictions.jsonl").exists() and len(index["skipped"]) == 4
    assert summary["settings"] == 4 and summary["rows"] == 20
    for entry in index["settings"]:
        file_rows = rows(out / entry["file"])
        assert [r["id"] for r in file_rows] == DATA_IDS  # data order, whatever order the batches finished in
        assert all(r["setting"] == entry["name"] and r["decoding"] == entry["decoding"] for r in file_rows)
        assert entry["complete"] and entry["rows"] == 5
    sampled = rows(out / "predictions/t0.7_k50_b1.jsonl")
    assert sampled[0]["decoding"]["top_k"] == 50 and sampled[0]["decoding"]["temperature"] == 0.7
    assert all(isinstance(r["seed"], int) for r in sampled) and len({r["seed"] for r in sampled}) == 5
    provenance = json.loads((out / "provenance.json").read_text())
    assert set(provenance["outputs"]) == set(names) | {"sweep", "view"}
    view = (out / "view.html").read_text(encoding="utf-8")  # the answers side by side, one column per setting
    assert all(f'<button type="button" class="sort">{name}</button>' in view for name in names)


def interrupted(monkeypatch, after_appends: int):
    """Make the run die after `after_appends` fsynced appends, leaving half a row behind as a kill would."""
    real = outputs.append_jsonl
    calls = {"n": 0}

    def append(path, objs):
        real(path, objs)
        calls["n"] += 1
        if calls["n"] == after_appends:
            with open(path, "a", encoding="utf-8") as f:
                f.write('{"id": "alpaca-')
            raise KeyboardInterrupt

    monkeypatch.setattr(outputs, "append_jsonl", append)


def test_a_killed_sweep_resumes_into_the_same_rows_as_an_uninterrupted_run(tmp_path, monkeypatch):
    argv = [*QUICK, "--temperature", "0", "0.9", "--top_k", "20", "--batch_size", "2"]
    infer.infer([*argv, "--output_dir", str(tmp_path / "whole")])
    out = tmp_path / "killed"
    with monkeypatch.context() as m:
        interrupted(m, after_appends=4)  # 3 batches of the first setting, 1 of the second
        with pytest.raises(KeyboardInterrupt):
            infer.infer([*argv, "--output_dir", str(out)])
    assert not (out / "provenance.json").exists() and (out / "config.yaml").exists()
    # Same command, other batching: the unfinished run continues without --resume.
    summary = infer.infer([*argv, "--output_dir", str(out), "--batch_size", "3"])
    assert summary["resumed_rows"] == 7 and summary["rows"] == 10
    for name in ("t0_k0_b1", "t0.9_k20_b1"):
        assert rows(out / f"predictions/{name}.jsonl") == rows(tmp_path / f"whole/predictions/{name}.jsonl")


def test_changed_settings_and_finished_runs_are_refused(tmp_path, monkeypatch, capsys):
    out = tmp_path / "o"
    argv = [*QUICK, "--temperature", "0.7", "--output_dir", str(out)]
    with monkeypatch.context() as m:
        interrupted(m, after_appends=1)
        with pytest.raises(KeyboardInterrupt):
            infer.infer([*argv, "--batch_size", "2"])
    assert infer.main([*argv, "--temperature", "0.8"]) == 2
    assert "temperature: [0.7] then, [0.8] now" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="seed"):
        infer.infer([*argv, "--seed", "1"])
    # A row whose recorded decoding is not this run's is named by file and line.
    path = out / "predictions.jsonl"
    first = json.loads(path.read_text().splitlines()[0])
    path.write_text(json.dumps(first | {"decoding": first["decoding"] | {"top_k": 5}}) + "\n")
    with pytest.raises(RecordError, match=r"predictions.jsonl:1: row .* other decoding settings"):
        infer.infer(argv)
    path.write_text(json.dumps(first) + "\n")
    data = tmp_path / "heldout.json"  # the same path with other content is other data
    data.write_text((PROJECT_ROOT / "data/alpaca_heldout.json").read_text())
    other = [*QUICK, "--data", str(data), "--output_dir", str(tmp_path / "d")]
    infer.infer(other)
    data.write_text(json.dumps(json.loads(data.read_text())[::-1]))
    with pytest.raises(ConfigError, match="the data changed"):
        infer.infer([*other, "--resume"])
    infer.infer(argv)  # finishes
    with pytest.raises(OutputExistsError, match="--overwrite"):
        infer.infer(argv)
    assert infer.infer([*argv, "--resume"])["resumed_rows"] == 5
    assert infer.infer([*argv, "--overwrite", "--max_new_tokens", "3"])["resumed_rows"] == 0
    assert {r["decoding"]["max_new_tokens"] for r in rows(path)} == {3}


def test_batched_greedy_equals_one_at_a_time(tmp_path, tiny_llama):
    from tunelab.teachers.decoding import generate_texts
    from tunelab.models import load_causal_lm, load_tokenizer
    from tunelab.prompts import student_prompt
    from tunelab.records import read_records
    from tunelab.teachers.base import SamplingParams

    tokenizer = load_tokenizer(tiny_llama)
    model = load_causal_lm(tiny_llama, dtype="float32").eval()
    prompt = student_prompt("alpaca_student")
    texts = [prompt.render(tokenizer, r["instruction"], r["input"])
             for r in read_records("data/alpaca_heldout.json", "alpaca")[:12]]
    assert len({len(tokenizer(t)["input_ids"]) for t in texts}) > 6  # lengths vary, so padding is exercised
    params = SamplingParams(max_new_tokens=16, temperature=0.0)
    batched = generate_texts(model, tokenizer, texts, params, batch_size=6, progress=False)
    single = generate_texts(model, tokenizer, texts, params, batch_size=1, progress=False)
    assert [g.text for g in batched] == [g.text for g in single]
    assert [g.prompt_tokens for g in batched] == [g.prompt_tokens for g in single]
    # Sampled answers are seeded per example, so they do not depend on the batch either.
    sampled = SamplingParams(max_new_tokens=16, temperature=1.0, top_k=50)
    seeds = list(range(100, 112))
    a = generate_texts(model, tokenizer, texts, sampled, batch_size=5, progress=False, seeds=seeds)
    b = generate_texts(model, tokenizer, texts, sampled, batch_size=1, progress=False, seeds=seeds)
    assert [g.text for g in a] == [g.text for g in b]


def served(bodies, answer=None):
    def reply(body):
        bodies.append(body)
        return answer(body) if answer else f"served answer {len(bodies)}"
    return MockServer(answer=reply)


def test_openai_backend_sends_chat_messages_or_the_rendered_template(tmp_path):
    bodies: list[dict] = []
    with served(bodies) as server:
        common = ["--model", "served-student", "--backend", "openai", "--base_url", server.base_url, "--limit", "4",
                  "--max_new_tokens", "12"]
        summary = infer.infer([*common, "--output_dir", str(tmp_path / "chat"), "--temperature", "0", "0.7"])
        assert summary["settings"] == 2 and summary["rows"] == 8 and len(bodies) == 8
        assert all("messages" in b and b["model"] == "served-student" and b["max_tokens"] == 12 for b in bodies)
        by_seed = {(b["temperature"], b["seed"]) for b in bodies}
        for name, temperature in (("t0_k0_b1", 0.0), ("t0.7_k0_b1", 0.7)):
            file_rows = rows(tmp_path / f"chat/predictions/{name}.jsonl")
            assert all(r["prediction"].startswith("served answer") and not r["empty"] for r in file_rows)
            assert {(temperature, r["seed"]) for r in file_rows} <= by_seed  # the seed sent is the seed recorded
        bodies.clear()
        infer.infer([*common, "--output_dir", str(tmp_path / "completion"), "--template", "alpaca_student"])
        assert len(bodies) == 4 and all(b["prompt"].startswith("Below is an instruction") for b in bodies)
        provenance = json.loads((tmp_path / "completion/provenance.json").read_text())
        assert provenance["models"]["backend"] == "openai" and "alpaca_student" in provenance["templates"]


def test_empty_answers_are_recorded_flagged_and_counted(tmp_path):
    bodies: list[dict] = []
    with served(bodies, answer=lambda body: "" if len(bodies) % 2 else None) as server:
        summary = infer.infer(["--model", "m", "--backend", "openai", "--base_url", server.base_url, "--limit", "4",
                               "--output_dir", str(tmp_path / "e")])
    file_rows = rows(tmp_path / "e/predictions.jsonl")
    assert summary["empty_predictions"] == 4 and all(r["empty"] and r["prediction"] == "" for r in file_rows)
    assert json.loads((tmp_path / "e/sweep.json").read_text())["settings"][0]["empty_predictions"] == 4


def test_bad_inputs_are_named(tmp_path):
    dup = tmp_path / "dup.json"
    dup.write_text(json.dumps([{"id": "a", "instruction": "x", "output": "y"}, {"id": "a", "instruction": "z", "output": "w"}]))
    with pytest.raises(RecordError, match=r"dup.json: record #1 has the id 'a' of record #0"):
        infer.infer(["--model", "m", "--data", str(dup), "--output_dir", str(tmp_path / "d")])
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    with pytest.raises(RecordError, match="empty.json: holds no Alpaca records"):
        infer.infer(["--model", "m", "--data", str(empty), "--output_dir", str(tmp_path / "d")])
    with pytest.raises(ConfigError, match="needs --base_url"):
        infer.infer(["--model", "m", "--backend", "openai", "--output_dir", str(tmp_path / "d")])
    with pytest.raises(ConfigError, match="does not beam search"):
        infer.infer(["--model", "m", "--backend", "openai", "--base_url", "http://127.0.0.1:1/v1", "--num_beams", "1",
                     "4", "--output_dir", str(tmp_path / "d")])
    with pytest.raises(ConfigError, match="unknown backend"):
        infer.infer(["--model", "m", "--backend", "tgi", "--output_dir", str(tmp_path / "d")])
    assert not (tmp_path / "d").exists()  # nothing was created by a refused run


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    """A LoRA student (two steps at a high rate, so it differs from the base) and its float32 merge."""
    root = tmp_path_factory.mktemp("students")
    finetune.finetune(["--config", TINY_STUDENT_CONFIG, "--data", "data/alpaca_sample.json", "--max_examples", "4",
                       "--per_device_train_batch_size", "4", "--max_length", "128", "--max_steps", "2",
                       "--learning_rate", "0.01", "--lora_dropout", "0", "--save_strategy", "no", "--report_to", "none",
                       "--activation_checkpointing", "false", "--disable_tqdm", "true",
                       "--output_dir", str(root / "adapter")])
    merge.merge(["--model", str(root / "adapter"), "--output_dir", str(root / "merged"), "--dtype", "float32",
                 "--check_max_tokens", "32"])
    return root / "adapter", root / "merged"


def test_base_adapter_and_merged_models_answer_with_their_own_names(student, tmp_path):
    adapter, merged = student
    argv = ["--limit", "3", "--max_new_tokens", "6", "--dtype", "float32"]
    found = {}
    for name, ref in (("base", "tunelab:tiny-llama"), ("adapter", str(adapter)), ("merged", str(merged))):
        infer.infer(["--model", ref, "--output_dir", str(tmp_path / name), *argv])
        found[name] = rows(tmp_path / name / "predictions.jsonl")
    assert (found["base"][0]["model"], found["base"][0]["adapter"]) == ("tunelab:tiny-llama", None)
    assert (found["adapter"][0]["model"], found["adapter"][0]["adapter"]) == ("tunelab:tiny-llama", str(adapter))
    assert (found["merged"][0]["model"], found["merged"][0]["adapter"]) == (str(merged), None)
    assert [r["prediction"] for r in found["merged"]] == [r["prediction"] for r in found["adapter"]]
    # The student answers with its saved template (alpaca_student), the bare base with its chat template.
    assert found["adapter"][0]["prompt_tokens"] != found["base"][0]["prompt_tokens"]
    with pytest.raises(ConfigError, match="merge it first"):
        infer.infer(["--model", str(adapter), "--backend", "vllm", "--output_dir", str(tmp_path / "v")])


def test_an_adapter_is_folded_into_the_weights_in_memory_for_generation(student):
    """Inference merges a LoRA adapter in memory (no extra matmuls per layer and token) and leaves the weights
    requiring grad: bf16 autocast caches its bf16 copy of a weight only then (else it re-casts at every token)."""
    from tunelab.models import load_causal_lm_with_adapter, resolve_model

    adapter, _ = student
    before = {p.name: p.read_bytes() for p in adapter.iterdir() if p.is_file()}
    kept = load_causal_lm_with_adapter(resolve_model("tunelab:tiny-llama"), str(adapter), dtype="float32")
    merged = load_causal_lm_with_adapter(resolve_model("tunelab:tiny-llama"), str(adapter), merge=True, dtype="float32")
    base = load_causal_lm_with_adapter(resolve_model("tunelab:tiny-llama"), None, dtype="float32")
    assert hasattr(kept, "peft_config") and not hasattr(merged, "peft_config")
    assert all(p.requires_grad for p in merged.parameters())
    ids = torch.tensor([[1, 5, 9, 13]])
    with torch.no_grad():
        assert not torch.allclose(base(ids).logits, kept(ids).logits, atol=1e-4)  # the adapter does something
        assert torch.allclose(kept(ids).logits, merged(ids).logits, atol=1e-5)
    assert {p.name: p.read_bytes() for p in adapter.iterdir() if p.is_file()} == before


def test_label_probabilities_are_the_models_own_next_token_probabilities(tiny_llama):
    import math

    import torch

    from tunelab.teachers.label_probs import continuation_ids, label_probabilities, label_slot_prefixes
    from tunelab.models import load_causal_lm, load_tokenizer

    tokenizer = load_tokenizer(tiny_llama)
    model = load_causal_lm(tiny_llama, dtype="float32").eval()
    labels = ("toxic", "insult", "identity_hate")
    prompts = ["Classify: you are awful\n", "Classify: a much longer comment about the weather today\n"]
    answers = ["toxic, insult", "I cannot classify this."]
    assert label_slot_prefixes(answers[0], 4) == ["", "toxic, "]
    assert label_slot_prefixes("a; b and c\nd", 3) == ["", "a; ", "a; b and "]
    # The space before the next label belongs to it, as the model writes it (", " + "insult" -> "," " insult").
    context, cont = continuation_ids(tokenizer, "toxic, ", "insult")
    assert tokenizer.decode(context) == "toxic," and tokenizer.decode(cont) == " insult"

    def by_hand(prompt, prefix, label):  # one sequence, one token at a time
        context, cont = continuation_ids(tokenizer, prefix, label)
        assert tokenizer.decode(context + cont) == prefix + label
        ids = tokenizer(prompt)["input_ids"] + context
        logprob = 0.0
        for token in cont:
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
            logprob += float(torch.log_softmax(logits.float(), -1)[token])
            ids.append(token)
        return math.exp(logprob)

    expected = [{label: max(by_hand(p, prefix, label) for prefix in label_slot_prefixes(a, 4)) for label in labels}
                for p, a in zip(prompts, answers)]
    ways = [dict(reuse_prompt=False, batch_size=1), dict(reuse_prompt=False, batch_size=5), dict(reuse_prompt=True)]
    for way in ways:  # right padding in a batch changes nothing, nor does the prompt's KV cache reused per label
        got = label_probabilities(model, tokenizer, prompts, answers, labels, **way)
        for g, e in zip(got, expected):
            assert g.keys() == e.keys()
            assert all(0 < g[k] <= 1 and g[k] == pytest.approx(e[k], rel=1e-4) for k in labels)


def test_label_probs_flow_from_inference_into_roc_curves(tmp_path):
    from tunelab.stages import evaluate

    comments = [("you idiot", "toxic, insult"), ("nice day", "none"), ("I will hurt you", "toxic, threat"),
                ("thanks a lot", "none"), ("shut up you fool", "toxic, insult"), ("great post", "none")]
    data = tmp_path / "moderation.json"
    data.write_text(json.dumps([{"id": f"c{i}", "instruction": "Which categories apply?", "input": text,
                                 "output": labels} for i, (text, labels) in enumerate(comments)]))
    out = tmp_path / "answers"
    infer.infer(["--model", "tunelab:tiny-llama", "--data", str(data), "--max_new_tokens", "4",
                 "--label_probs", "jigsaw", "--output_dir", str(out)])
    answered = rows(out / "predictions.jsonl")
    jigsaw = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]
    assert all(list(r["label_probs"]) == jigsaw and all(0 < p < 1 for p in r["label_probs"].values())
               for r in answered)
    assert json.loads((out / "sweep.json").read_text())["label_probs"]["labels"] == jigsaw
    scores = evaluate.score(["--task", "classification", "--predictions", str(out / "predictions.jsonl"),
                             "--taxonomy", "jigsaw", "--allow_empty_predictions", "true",
                             "--output_dir", str(tmp_path / "scores")])
    assert scores["scores_from"] == "label_probs"
    assert 0 <= scores["per_label"]["toxic"]["roc_auc"] <= 1
    assert (tmp_path / "scores/roc_curves.png").is_file() and (tmp_path / "scores/pr_curves.png").is_file()
    with pytest.raises(ConfigError, match="only --backend transformers"):
        infer.infer(["--model", "m", "--backend", "openai", "--base_url", "http://localhost:1/v1",
                     "--data", str(data), "--label_probs", "jigsaw", "--output_dir", str(tmp_path / "x")])


def test_a_k_shot_request_puts_the_solved_examples_before_the_example(tiny_llama):
    from tunelab.inference.backend import Backend
    from tunelab.models import load_tokenizer
    from tunelab.prompts import CHAT, StudentPrompt, student_prompt

    tokenizer = load_tokenizer(tiny_llama)
    shots = [{"instruction": "Classify", "input": "you idiot", "output": "insult"},
             {"instruction": "Classify", "input": "hello there", "output": "none"}]
    example = {"instruction": "Classify", "input": "go away"}
    template = student_prompt("alpaca_student", tokenizer)
    prompt = Backend(None, template, tokenizer, "m", None, None, renders_chat=True, shots=shots).request(example).prompt
    assert prompt.index("you idiot") < prompt.index("insult") < prompt.index("hello there") < prompt.index("go away")
    assert prompt.endswith(template.render(tokenizer, "Classify", "go away"))
    # a server renders chat itself: the shots are earlier turns of the conversation sent
    served = Backend(None, StudentPrompt(CHAT), None, "m", None, None, renders_chat=False, shots=shots)
    messages = served.request(example).messages
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert messages[1]["content"] == "insult" and messages[-1]["content"] == "Classify\n\ngo away"


def test_shots_settings_are_checked_before_any_model_loads(tmp_path, capsys):
    assert infer.main(["--model", "tunelab:tiny-llama", "--shots", "2", "--output_dir", str(tmp_path / "a")]) == 2
    assert "give --shots_data" in capsys.readouterr().err
    few = tmp_path / "few.json"
    few.write_text('[{"instruction": "Classify", "input": "x", "output": "none"}]')
    assert infer.main(["--model", "tunelab:tiny-llama", "--shots", "2", "--shots_data", str(few),
                       "--output_dir", str(tmp_path / "b")]) == 2
    assert "2 shots asked, but the shots data holds only 1" in capsys.readouterr().err
