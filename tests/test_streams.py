import torch
from avalanche.training.plugins import LwFPlugin

from benchmark.config import TrainConfig
from benchmark.model.heads import CosineHead, MultiTaskClassifier
from benchmark.streams import build_stream, training_split
from benchmark.trainer import Trainer
from tasks.synthetic import synthetic_task


def _tasks():
    return [
        synthetic_task(f"t{i}", seed=20 + i, num_classes=3 + i, n_train=20, n_test=6).build(
            None, False
        )
        for i in range(2)
    ]


def test_stream_has_one_task_aware_experience_per_task(tiny_encoder):
    tasks = _tasks()
    bm = build_stream(tasks, tiny_encoder.train_transform, tiny_encoder.eval_transform)
    assert len(bm.train_stream) == 2 and len(bm.test_stream) == 2
    for t, exp in enumerate(bm.train_stream):
        assert exp.task_labels == [t]
        assert set(exp.dataset.targets_task_labels) == {t}
        assert sorted(exp.classes_in_this_experience) == list(range(3 + t))
        assert len(exp.dataset) == len(training_split(tasks[t]))  # validation images held out
        x, y, task = exp.dataset[0]
        assert x.shape == (3, 32, 32) and task == t
    # test stream uses the eval transform (deterministic)
    exp = bm.test_stream[0]
    torch.testing.assert_close(exp.dataset[0][0], exp.dataset[0][0])


def test_avalanche_lwf_plugin_runs_two_experiences(tiny_encoder):
    tasks = _tasks()
    torch.manual_seed(0)
    import copy

    encoder = copy.deepcopy(tiny_encoder.module)
    heads = [CosineHead(torch.randn(d.num_classes, 32), scale=10.0) for d in tasks]
    model = MultiTaskClassifier(encoder, heads)
    lwf = LwFPlugin(alpha=1.0, temperature=2.0)
    losses = []

    class Record(LwFPlugin.__mro__[1]):  # a SupervisedPlugin that records the loss
        def after_backward(self, strategy, **kw):
            losses.append(strategy.loss.item())

    cfg = TrainConfig(batch_size=16, lr=1e-3, warmup_steps=2)
    trainer = Trainer(
        model=model,
        cfg=cfg,
        device=torch.device("cpu"),
        plugins=[lwf, Record()],
        task_names=["t0", "t1"],
    )
    bm = build_stream(tasks, tiny_encoder.train_transform, tiny_encoder.eval_transform)
    for exp in bm.train_stream:
        trainer.train_task(exp, epochs=1)
    assert lwf.lwf.prev_model is not None and set(lwf.lwf.prev_classes_by_task) == {0, 1}
    # one loss per mini-batch of the train splits (minus validation): ceil(54/16) + ceil(72/16)
    assert len(losses) == 4 + 5 and all(torch.isfinite(torch.tensor(losses)))


def test_frozen_batchnorm_keeps_pretrained_running_statistics():
    from benchmark.model.encoder import build_encoder

    tasks = _tasks()[:1]
    for mode, should_change in (("frozen", False), ("train", True)):
        encoder = build_encoder("resnet20-cifar", "none")
        before = encoder.module.bn1.running_mean.clone()
        model = MultiTaskClassifier(encoder.module, [CosineHead(torch.randn(3, 64), scale=10.0)])
        cfg = TrainConfig(batch_size=16, lr=1e-3, warmup_steps=2, batchnorm=mode)
        trainer = Trainer(model=model, cfg=cfg, device=torch.device("cpu"), task_names=["t0"])
        bm = build_stream(tasks, encoder.train_transform, encoder.eval_transform)
        trainer.train_task(bm.train_stream[0], epochs=1)
        changed = not torch.equal(before, encoder.module.bn1.running_mean)
        assert changed == should_change, mode
        assert not torch.equal(encoder.module.bn1.weight, torch.ones(16))  # affine still trains
