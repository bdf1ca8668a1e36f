"""The VRF measure the evaluation runs (benchmark/measures.py), and what a run asks for (the
package docstring describes what it computes)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from benchmark.errors import CFBenchError
from benchmark.kinds import OSE, VRF, VRF_KINDS
from benchmark.measures import EvalDataset, StageFeatures
from benchmark.plugin import declared
from benchmark.probe.features import FeaturePass, Transformed, extract_features
from benchmark.probe.fit import top1
from benchmark.rng import preserve_rng
from benchmark.vrf.functions import (
    VRFSettings,
    calibrate_temperature,
    ensemble_probs,
    knn_kth_distance,
    missing_neighbour,
    vrf_weight,
    zsf_k,
)


@dataclass
class _ZeroShot:
    """A task's zero-shot side, fixed for the run (kept on the CPU)."""

    train_correct: torch.Tensor  # [n] bool: the zero-shot model is right on the probe's train
    temperature: float  # T_zs, calibrated on the validation part
    test_logits: torch.Tensor  # [n_test, C]


class VRFEvaluator:
    """The measure of ``vrf`` and ``ose`` of task j at stages t >= j (module docstring); the
    evaluation calls it for a task with zero-shot weights and a fitted head (benchmark/kinds.py)."""

    kinds = VRF_KINDS

    def __init__(
        self,
        settings: VRFSettings,
        pretrained: nn.Module,
        logit_scale: float,
        transform,
        features: FeaturePass,
        task_names: Sequence[str],
    ):
        self.settings, self.logit_scale = settings, float(logit_scale)
        self.transform, self.features = transform, features
        self.device = features.device
        self.pretrained: nn.Module | None = _frozen_cpu_copy(pretrained)
        self._zs: dict[str, _ZeroShot] = {}
        self._pending = set(task_names)  # tasks whose zero-shot side is still to be computed
        # (stage, task) -> (K, |ZSF|, |train|): the neighbour each vrf record used
        self.neighbours: dict[tuple[int, str], tuple[int, int, int]] = {}

    def __call__(self, ds: EvalDataset, stage: int, f: StageFeatures) -> dict[str, float]:
        """{"vrf": acc, "ose": acc} (fractions) for a trained task; {} otherwise. At stage 0
        (the features are the pretrained encoder's) it only keeps the zero-shot side."""
        if stage == 0:
            self._keep_zero_shot(ds, f, f.train_f, f.test_f)
            return {}
        if ds.task_label >= stage:  # not trained yet: its head is still the zero-shot one
            return {}
        zs = self._zero_shot(ds, f)
        s, val = self.settings, f.val_mask
        with torch.no_grad():
            ft_train, ft_test = f.head(f.train_f).float(), f.head(f.test_f).float()
        zs_test = zs.test_logits.to(self.device)
        correct = ft_train.argmax(dim=1) == f.train_y
        train_part = ~val
        # zsf_mask, with the zero-shot side kept as its correctness (not [n, C] logits)
        zsf = correct & ~zs.train_correct.to(self.device) & train_part
        n_zsf, n_train = int(zsf.sum()), int(train_part.sum())
        k = zsf_k(n_zsf, n_train)
        self.neighbours[(stage, ds.name)] = (k, n_zsf, n_train)
        why = missing_neighbour(k, n_zsf)
        if why is not None:
            where = f"note: stage {stage}, {ds.name}: VRF's K = round({n_zsf} / {n_train} * 1000)"
            tqdm.write(f"{where} = {k}; {why}, and vrf is the zero-shot prediction")
        bank = F.normalize(f.train_f[zsf], dim=1)
        d = knn_kth_distance(F.normalize(f.test_f, dim=1), bank, k)  # inf: no K-th neighbour
        w = vrf_weight(d, s.a, s.b)
        t_ft = calibrate_temperature(ft_train[val], float(correct[val].float().mean()))
        return {
            VRF.name: top1(ensemble_probs(ft_test, zs_test, w, t_ft, zs.temperature), f.test_y),
            OSE.name: top1(
                ensemble_probs(ft_test, zs_test, s.ose_weight, t_ft, zs.temperature), f.test_y
            ),
        }

    def _zs_logits(self, ds: EvalDataset, features: torch.Tensor) -> torch.Tensor:
        weight = ds.zs_weight.to(features.device, torch.float32)
        return self.logit_scale * F.normalize(features.float(), dim=1) @ weight.T

    def _keep_zero_shot(self, ds: EvalDataset, f: StageFeatures, train_f, test_f) -> _ZeroShot:
        if ds.name in self._zs:
            return self._zs[ds.name]
        train_logits = self._zs_logits(ds, train_f)
        correct = train_logits.argmax(dim=1) == f.train_y
        val = f.val_mask
        t_zs = calibrate_temperature(train_logits[val], float(correct[val].float().mean()))
        zs = _ZeroShot(correct.cpu(), t_zs, self._zs_logits(ds, test_f).cpu())
        self._zs[ds.name] = zs
        self._pending.discard(ds.name)
        if not self._pending:
            self.pretrained = None  # every task's zero-shot side is known: free the copy
        return zs

    def _zero_shot(self, ds: EvalDataset, f: StageFeatures) -> _ZeroShot:
        if ds.name in self._zs:
            return self._zs[ds.name]
        encoder = self.pretrained.to(self.device)
        try:
            with preserve_rng(self.device):  # a DataLoader pass draws from the global RNG
                pre = extract_features(
                    encoder,
                    [
                        Transformed(ds.data.train, self.transform, f.train_idx),
                        Transformed(ds.data.test, self.transform, f.test_idx),
                    ],
                    desc=f"zero-shot features {ds.name}",
                    **self.features.kwargs(),
                )
        finally:
            encoder.to("cpu")
        n = len(f.train_idx)
        return self._keep_zero_shot(ds, f, pre[:n], pre[n:])


def _frozen_cpu_copy(module: nn.Module) -> nn.Module:
    """A frozen copy on the CPU, without the original's forward hooks (e.g. LDIFS's recorders)
    or gradients."""
    clone = copy.deepcopy(module).to("cpu")
    for m in clone.modules():
        m._forward_hooks.clear()
        m._forward_pre_hooks.clear()
    for p in clone.parameters():
        p.grad = None
    return clone.eval().requires_grad_(False)


def requested_settings(plugins: Sequence, flag: bool) -> VRFSettings | None:
    """The VRF settings a run asks for: a plugin that declares ``evaluation_kinds`` with "vrf"
    (the ``vrf`` strategy) gives its ``vrf_settings``; ``--vrf`` alone gives the defaults; None
    when neither."""
    for plugin in plugins:
        if VRF.name in declared(plugin).evaluation_kinds:
            return getattr(plugin, "vrf_settings", None) or VRFSettings()
    return VRFSettings() if flag else None


VRF_NEEDS = "VRF ensembles each task's fine-tuned head with the pretrained zero-shot head"


def text_tower_missing(model_name: str, reason: str | None = VRF_NEEDS) -> str | None:
    """Why a run of ``model_name`` cannot have VRF, or another strategy that needs a text tower
    (``reason``: why it does; None: not said), known before building it (None: it can)."""
    from benchmark.model.encoder import has_text_tower

    if has_text_tower(model_name):
        return None
    because = f" ({reason})" if reason else ""
    return f"needs a model with a text tower{because} and {model_name} has none"


def skip_without_text_tower(cfg, needs_text_tower: bool, optional: bool) -> str | None:
    """Before a run (``cfg``: RunConfig) is built: None when it can have what it asks for; why to
    skip it when it is one of ``--strategy all`` (``optional``) whose strategy needs a text tower
    the model lacks; CFBenchError (one line, with the fix) when ``--vrf`` asks for one, or the
    strategy was named on its own."""
    reason = VRF_NEEDS if cfg.vrf or cfg.strategy == "vrf" else None  # another: not said
    why = text_tower_missing(cfg.model, reason) if cfg.vrf or needs_text_tower else None
    if why is None:
        return None
    if optional and not cfg.vrf:
        return f"it {why}"
    what, fix = (
        ("--vrf", "drop --vrf")
        if cfg.vrf
        else (f"strategy {cfg.strategy}", "choose another strategy")
    )
    raise CFBenchError(f"{what} {why}; use a CLIP model (e.g. --model ViT-B-32) or {fix}")


def build_evaluator(
    flag: bool, plugins: Sequence, encoder, features: FeaturePass, task_names, model_name: str
) -> VRFEvaluator | None:
    """The run's VRF evaluator (``encoder``: benchmark.model.encoder.Encoder, still pretrained),
    or None when the run does not ask for one; CFBenchError without a text tower."""
    settings = requested_settings(plugins, flag)
    if settings is None:
        return None
    if encoder.text is None:
        why = text_tower_missing(model_name) or f"needs a text tower and {model_name} has none"
        what, fix = ("--vrf", "drop --vrf") if flag else ("VRF", "choose another strategy")
        raise CFBenchError(f"{what} {why}; use a CLIP model (e.g. --model ViT-B-32) or {fix}")
    return VRFEvaluator(
        settings,
        encoder.module,
        encoder.text.logit_scale,
        encoder.eval_transform,
        features,
        task_names,
    )
