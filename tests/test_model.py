from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmark.checkpoint.state import Checkpoint, restore, rng_state
from benchmark.errors import CFBenchError
from benchmark.model.heads import CosineHead, MultiTaskClassifier
from tasks.synthetic import SYNTHETIC_TASKS


def test_zero_shot_weights_shape_unit_norm_and_template_average(tiny_encoder):
    text = tiny_encoder.text
    names, templates = ["red waves", "blue dots", "grey rings"], ["a {}.", "the {} here."]
    w = text.class_weights(names, templates)
    assert w.shape == (3, tiny_encoder.embed_dim)
    torch.testing.assert_close(w.norm(dim=1), torch.ones(3))
    # independent computation for one class: normalise each template, average, re-normalise
    with torch.no_grad():
        emb = text.model.encode_text(text.tokenizer([t.format("blue dots") for t in templates]))
    expected = F.normalize(F.normalize(emb, dim=-1).mean(0), dim=0)
    torch.testing.assert_close(w[1], expected, atol=1e-5, rtol=1e-5)


def test_zero_shot_head_logits_use_clip_scale(tiny_encoder):
    scale = tiny_encoder.text.logit_scale
    assert abs(scale - 1 / 0.07) < 1e-3  # open_clip's initial temperature for random weights
    w = F.normalize(torch.randn(4, 32), dim=1)
    head = CosineHead(w, scale=scale)
    f = torch.randn(5, 32) * 3
    expected = scale * F.normalize(f, dim=1) @ w.T
    torch.testing.assert_close(head(f), expected)
    assert torch.all(head.bias == 0) and head.weight.requires_grad
    # the temperature is inside the trained weight, as in wise-ft's and the LDIFS code's heads
    torch.testing.assert_close(head.weight, scale * w)
    assert dict(head.named_buffers()) == {}


def _one_adamw_step(module, forward, f, y, lr=1e-5, wd=0.1):
    """Logits on ``f`` after one AdamW step of CE on (f, y)."""
    opt = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=wd)
    F.cross_entropy(forward(f), y).backward()
    opt.step()
    with torch.no_grad():
        return forward(f)


def test_zero_shot_head_takes_the_papers_heads_adamw_step():
    """One AdamW step (lr 1e-5, wd 0.1, the protocol's) moves the logits exactly as it moves
    those of the head wise-ft and the LDIFS code build: nn.Linear(weight = logit_scale.exp() * W,
    bias 0) on inputs divided by their norm. (A scale kept outside the trained weight moves them
    ~scale times as far.)"""
    g = torch.Generator().manual_seed(0)
    scale = 100.0  # ViT-B/32's logit_scale.exp()
    w = F.normalize(torch.randn(6, 64, generator=g), dim=1)  # float32, as text weights are
    f = torch.randn(16, 64, generator=g, dtype=torch.float64) * 5
    y = torch.randint(0, 6, (16,), generator=g)

    reference = torch.nn.Linear(64, 6)
    with torch.no_grad():
        reference.weight.copy_(w * scale)  # zeroshot_weights *= logit_scale.exp()
        reference.bias.zero_()
    reference.double()  # the step in float64: rounding far below the step's size
    ref_before = reference(f / f.norm(dim=-1, keepdim=True)).detach()
    ref_after = _one_adamw_step(
        reference, lambda x: reference(x / x.norm(dim=-1, keepdim=True)), f, y
    )

    head = CosineHead(w, scale=scale).double()
    torch.testing.assert_close(head(f), ref_before, rtol=0, atol=1e-12)
    ours = _one_adamw_step(head, head, f, y)

    moved = (ref_after - ref_before).abs().max().item()
    assert 1e-6 < moved < 1e-3  # ~lr * ||f/|f| ||_1: AdamW's first step is ~lr per element
    torch.testing.assert_close(ours, ref_after, rtol=0, atol=1e-4 * moved)


def test_lp_head_is_the_probes_linear_map_and_steps_as_a_plain_linear_layer():
    """LP-initialised heads (no temperature): logits = W normalize(f) + b bit for bit, and one
    AdamW step is that of an nn.Linear with the same W and b, bit for bit."""
    g = torch.Generator().manual_seed(1)
    w, b = torch.randn(4, 32, generator=g), torch.randn(4, generator=g)
    f, y = torch.randn(8, 32, generator=g), torch.randint(0, 4, (8,), generator=g)
    reference = torch.nn.Linear(32, 4)
    with torch.no_grad():
        reference.weight.copy_(w)
        reference.bias.copy_(b)
    head = CosineHead(w, b)
    assert torch.equal(head(f), reference(F.normalize(f, dim=-1)))
    ref_after = _one_adamw_step(reference, lambda x: reference(F.normalize(x, dim=-1)), f, y)
    assert torch.equal(_one_adamw_step(head, head, f, y), ref_after)
    assert torch.equal(head.weight, reference.weight) and torch.equal(head.bias, reference.bias)


def test_a_state_dict_with_the_old_separate_scale_loads_as_the_same_function():
    """Checkpoints written before the fold hold (W, b, scale): they load as weight = scale * W."""
    g = torch.Generator().manual_seed(2)
    w, b, f = torch.randn(3, 16, generator=g), torch.randn(3, generator=g), torch.randn(5, 16)
    model = MultiTaskClassifier(torch.nn.Identity(), [CosineHead(torch.zeros(3, 16)) for _ in "ab"])
    old = {
        "heads.0.weight": w,
        "heads.0.bias": b,
        "heads.0.scale": torch.tensor(25.0),
        "heads.1.weight": w,
        "heads.1.bias": b,
        "heads.1.scale": torch.tensor(1.0),
    }
    model.load_state_dict(old)  # strict: no unexpected key left
    expected = 25.0 * F.linear(F.normalize(f, dim=-1), w) + b
    torch.testing.assert_close(model.heads["0"](f), expected)
    assert torch.equal(model.heads["1"].weight, w)  # scale 1: exactly the stored W
    assert old["heads.0.weight"] is w and "heads.0.scale" in old  # the caller's dict untouched


def test_text_tower_is_outside_trained_module(tiny_encoder):
    heads = [CosineHead(torch.randn(3, 32)), CosineHead(torch.randn(5, 32))]
    model = MultiTaskClassifier(tiny_encoder.module, heads)
    trained = {id(p) for p in model.parameters()}
    assert not any(id(p) in trained for p in tiny_encoder.text.model.parameters())
    assert not hasattr(tiny_encoder.text.model, "visual")
    x = torch.randn(2, 3, 32, 32)
    assert model(x, 1).shape == (2, 5)
    assert model(x, torch.tensor([0, 1])).shape == (2, 5)  # padded to the widest head


def test_synthetic_task_is_deterministic_and_labelled():
    spec = SYNTHETIC_TASKS["synth_a"]
    a, b = spec.build(None, False), spec.build(None, False)
    assert len(a.classnames) == len(set(a.classnames)) == 8
    img, label = a.train[3]
    assert img.size == (32, 32) and img.mode == "RGB"
    assert np.array_equal(np.asarray(img), np.asarray(b.train[3][0])) and label == b.train[3][1]
    assert sorted(set(a.train.targets)) == list(range(8))
    assert len(a.train) == 8 * 60 and len(a.test) == 8 * 40


def test_mixed_task_batch_pads_narrow_heads_so_cross_entropy_ignores_padding(tiny_encoder):
    heads = [CosineHead(torch.randn(3, 32)), CosineHead(torch.randn(5, 32))]
    model = MultiTaskClassifier(tiny_encoder.module, heads).eval()
    x = torch.randn(4, 3, 32, 32)
    labels = torch.tensor([0, 1, 0, 1])
    with torch.no_grad():
        out = model(x, labels)
        assert out.shape == (4, 5)
        torch.testing.assert_close(out[labels == 0, :3], model(x[labels == 0], 0))
        torch.testing.assert_close(out[labels == 1], model(x[labels == 1], 1))
        y = torch.tensor([2, 4, 1, 0])
        # the loss of a task-0 sample equals its loss over task 0's own 3 classes
        full = F.cross_entropy(out, y, reduction="none")
        own = F.cross_entropy(model(x[labels == 0], 0), y[labels == 0], reduction="none")
        torch.testing.assert_close(full[labels == 0], own)


class CountingEncoder(torch.nn.Module):
    def __init__(self, module):
        super().__init__()
        self.module, self.calls = module, 0

    def forward(self, x):
        self.calls += 1
        return self.module(x)


def test_all_heads_come_from_one_encoder_pass_reused_from_the_training_forward(tiny_encoder):
    import copy

    heads = [CosineHead(torch.randn(3, 32)), CosineHead(torch.randn(5, 32))]
    encoder = CountingEncoder(tiny_encoder.module)
    model = MultiTaskClassifier(encoder, heads).train()
    model.known_train_tasks_labels = {0, 1}
    x = torch.randn(4, 3, 32, 32)
    logits = model(x, torch.tensor([1, 1, 1, 1]))  # a single-task batch: that task's head
    assert logits.shape == (4, 5) and encoder.calls == 1
    every = model.forward_all_tasks(x)  # LwF's student term on the training batch
    assert encoder.calls == 1 and sorted(every) == [0, 1]
    with torch.no_grad():
        features = tiny_encoder.module(x)
        torch.testing.assert_close(every[0], heads[0](features))
        torch.testing.assert_close(every[1], logits)
    model.forward_all_tasks(x.clone())  # another batch: encoded (once for both heads)
    assert encoder.calls == 2
    teacher = copy.deepcopy(model)  # LwF's copy: the training graph's features stay behind
    assert teacher._last is None and model._last is not None
    with torch.no_grad():
        model.eval().forward_all_tasks(x)  # evaluation never reuses or keeps features
    assert encoder.calls == 3 and model._last is None


def test_task_labels_on_the_cpu_pick_heads_for_a_mixed_batch(tiny_encoder):
    heads = [CosineHead(torch.randn(3, 32)), CosineHead(torch.randn(5, 32))]
    model = MultiTaskClassifier(tiny_encoder.module, heads).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        out = model(x, torch.tensor([1, 0, 0, 1]))
        torch.testing.assert_close(out[[1, 2], :3], model(x[[1, 2]], 0))
        torch.testing.assert_close(out[[0, 3]], model(x[[0, 3]], 1))


def test_resuming_a_checkpoint_whose_zero_shot_heads_kept_a_separate_scale_is_refused():
    """Zero-shot heads trained with the scale outside W took ~scale-times larger steps: their run
    is not resumed (one line naming --fresh); LP heads (scale 1) trained as now and load."""
    w, b = torch.randn(3, 8), torch.zeros(3)

    def resume(scale: float) -> MultiTaskClassifier:
        model = MultiTaskClassifier(torch.nn.Identity(), [CosineHead(torch.zeros(3, 8))])
        state = {"heads.0.weight": w, "heads.0.bias": b, "heads.0.scale": torch.tensor(scale)}
        ckpt = Checkpoint(1, [], rng_state(), state, {"clock": {}, "known_tasks": [0]}, [])
        restore(ckpt, model, [], SimpleNamespace(clock=SimpleNamespace()), "run/stage01.pt")
        return model

    with pytest.raises(CFBenchError, match="heads.0.scale = 100") as info:
        resume(100.0)
    message = str(info.value)
    assert "\n" not in message and "run/stage01.pt" in message and "--fresh" in message
    assert torch.equal(resume(1.0).heads["0"].weight, w)
