"""VRF: Zhu, Cui & Zhang, "Robust Fine-tuning of Zero-shot Models via Variance Reduction",
NeurIPS 2024, arXiv:2411.06966 (official code: BeierZhu/VRF).

Training is plain FT; VRF is an inference rule, so this strategy only turns on the evaluation
kinds ``vrf`` and ``ose`` (benchmark/vrf/, where the math and its sources are). For a test image
x of task j, with d(x) the squared distance of its normalised fine-tuned feature to its k-th
nearest zero-shot-failure training image,

    p(y | x) = w(x) softmax(z_ft / T_ft) + (1 - w(x)) softmax(z_zs / T_zs),
    w(x) = sigmoid(-(d(x) - a) / b),

and ``ose`` is the same with a fixed w = ose_weight: a calibrated fixed-weight output ensemble,
not the paper's OSE (README, VRF section). The LP matrix of this strategy is FT's: VRF changes
predictions, not features. Any other strategy gets the same kinds with ``--vrf``.

Defaults: a = 1.5, b = 0.6 from the official code (``src/main.py``, tuned on ImageNet with
ViT-B/16); ose_weight = 0.5, a fixed even mix (the official baseline tunes it on test data).
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmark.kinds import VRF_KINDS
from benchmark.plugin import StrategyPlugin
from benchmark.vrf.functions import VRFSettings
from strategies.common import require_text_tower


@dataclass(frozen=True)
class Config(VRFSettings):
    """a (1.5), b (0.6): VRF's weight sigmoid; ose_weight (0.5): the fixed ensemble's weight of
    the fine-tuned side. Checked in VRFSettings.__post_init__."""


class VRFEvaluationPlugin(StrategyPlugin):
    """Changes no training step; the session reads ``evaluation_kinds`` and ``vrf_settings`` and
    gives the evaluation a VRF evaluator. Its checkpoint state is empty (StrategyPlugin's): the
    settings come with the run, the zero-shot side is recomputed."""

    evaluation_kinds = VRF_KINDS

    def __init__(self, settings: VRFSettings):
        super().__init__()
        self.vrf_settings = settings


def build(context, config: Config) -> list:
    because = "it ensembles each task's fine-tuned head with the pretrained zero-shot head"
    require_text_tower(context, "vrf", because)
    settings = VRFSettings(config.a, config.b, config.ose_weight)
    return [VRFEvaluationPlugin(settings)]
