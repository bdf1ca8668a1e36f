"""Zero-shot class weights (benchmark/model/text.py): the shortened-context prompt encoding is
the model's own ``encode_text`` (up to float rounding, on the real ViT-B-32 text tower), and a
run encodes every dataset's prompts once, counted in its cost."""

import json

import open_clip
import pandas as pd
import pytest
import torch

from benchmark.cost import Cost
from benchmark.model.text import TextCache, TextTower, encode_prompts, zero_shot_weights
from run_benchmark import main
from tasks import get_sequence, load_task
from tasks.base import TaskData


@pytest.fixture(scope="module")
def vit_b32_text():
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    return model, open_clip.get_tokenizer("ViT-B-32")


PROMPTS = ["a photo of a {}.", "a blurry photo of the number: {}.", "{}", "itap of my {}."]


def test_the_shortened_context_is_encode_text_exactly_on_vit_b32(vit_b32_text):
    model, tokenizer = vit_b32_text
    tokens = tokenizer([p.format(n) for p in PROMPTS for n in ("bubbly", "stop sign ahead")])
    assert tokens.shape[1] == 77 and int(tokens.argmax(-1).max()) + 1 < 20
    with torch.no_grad():
        full, short = model.encode_text(tokens), encode_prompts(model, tokens)
    # the same arithmetic on the positions kept; only the order of float sums may differ
    torch.testing.assert_close(short, full, atol=2e-5, rtol=1e-5)
    # the model is left as it was: the full context comes back
    assert model.positional_embedding.shape[0] == 77 and model.attn_mask.shape == (77, 77)


def test_models_without_a_causal_mask_and_argmax_pooling_use_encode_text(vit_b32_text):
    model, tokenizer = vit_b32_text
    tokens = tokenizer(["a photo of a cat."])
    calls = []

    class Last(torch.nn.Module):  # pools the last position: cutting would change the result
        text_pool_type = "last"
        attn_mask = model.attn_mask
        positional_embedding = model.positional_embedding

        def encode_text(self, t):
            calls.append(t.shape[1])
            return torch.zeros(len(t), 4)

    encode_prompts(Last(), tokens)
    assert calls == [77]


def test_class_weights_batch_prompts_across_classes_like_one_class_at_a_time(vit_b32_text):
    model, tokenizer = vit_b32_text
    text = TextTower(model, tokenizer, 100.0)
    names = [f"class {i}" for i in range(70)]  # 280 prompts: two batches of at most 256
    w = text.class_weights(names, PROMPTS)
    with torch.no_grad():
        for i in (0, 63, 64, 69):
            emb = model.encode_text(tokenizer([p.format(names[i]) for p in PROMPTS]))
            row = torch.nn.functional.normalize(emb, dim=-1).mean(0)
            torch.testing.assert_close(w[i], row / row.norm(), atol=1e-6, rtol=1e-5)


def test_zero_shot_weights_count_prompts_and_time_as_the_text_phase(tiny_encoder):
    data = {
        "a": TaskData("a", [], [], ["x", "y"], ("a {}.", "the {}.")),
        "b": TaskData("b", [], [], ["p", "q", "r"], ("{}",)),
    }
    cost = Cost(torch.device("cpu"))
    weights = zero_shot_weights(tiny_encoder.text, data, cost)
    assert {k: tuple(v.shape) for k, v in weights.items()} == {"a": (2, 32), "b": (3, 32)}
    assert cost.current["prompts_encoded"] == 2 * 2 + 3 * 1
    assert cost.current["seconds"]["text"] > 0
    assert zero_shot_weights(None, data, cost) == {}


def test_a_run_encodes_each_datasets_prompts_once_and_the_next_run_reads_them(
    tmp_path, monkeypatch
):
    calls = []
    original = TextTower.class_weights

    def counting(self, classnames, templates, progress=None):
        calls.append(tuple(classnames))
        return original(self, classnames, templates, progress)

    monkeypatch.setattr(TextTower, "class_weights", counting)
    cache = ["--cache-dir", str(tmp_path / "cache")]
    probes = ["--probe-max-train", "40", "--probe-max-test", "40"]
    argv = ["--sequence", "smoke", "--epochs", "1", "--strategy", "ft", *cache, *probes]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    # smoke: 3 tasks + 1 control, each encoded once (heads and evaluation share them)
    assert len(calls) == 4 and len(set(calls)) == 4
    first = _cost(tmp_path / "a")
    smoke = get_sequence("smoke")
    datasets = [load_task(n, tmp_path) for n in (*smoke.tasks, *smoke.controls)]
    assert first["prompts_encoded"] == sum(len(d.classnames) * len(d.templates) for d in datasets)
    assert 0 < first["seconds"]["text"] <= first["seconds"]["wall"]
    # encoded before stage 0, inside its wall time
    assert first["per_stage"][0]["seconds"]["text"] == pytest.approx(
        first["seconds"]["text"], abs=1e-3
    )
    assert len(list((tmp_path / "cache" / "text").glob("*.pt"))) == 4

    assert main([*argv, "--out", str(tmp_path / "b")]) == 0  # the same text tower: all cached
    assert len(calls) == 4 and _cost(tmp_path / "b")["prompts_encoded"] == 0
    zs = [_records(tmp_path / run).query("kind == 'zs'") for run in ("a", "b")]
    pd.testing.assert_frame_equal(zs[0], zs[1])


def _cost(out):
    return json.loads(next(out.glob("smoke/ft/seed*/metrics.json")).read_text())["cost"]


def _records(out):
    return pd.read_csv(next(out.glob("smoke/ft/seed*/records.csv")))


def test_the_cache_key_changes_with_the_templates_and_the_tower(tmp_path):
    data = TaskData("a", [], [], ["x", "y"], ("a {}.",))
    cache = TextCache(tmp_path, {"model": "m", "text_weights": "w1"})
    cache.put(data, torch.ones(2, 4))
    torch.testing.assert_close(cache.get(data), torch.ones(2, 4))
    assert cache.get(TaskData("a", [], [], ["x", "y"], ("the {}.",))) is None
    assert TextCache(tmp_path, {"model": "m", "text_weights": "w2"}).get(data) is None
    cache.file(data).write_bytes(b"truncated")  # unreadable: recomputed, not an error
    assert cache.get(data) is None
