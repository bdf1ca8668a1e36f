import numpy as np
import torch
import torch.nn.functional as F

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
