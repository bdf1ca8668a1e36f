"""The function LoRA and DoRA compute, layer by layer: the training forward, the gradients wrt A,
B (and DoRA's magnitudes) and the merge against W0 + (alpha / r) B A written by hand (the plugin,
BitFit and the counts are tests/test_peft.py)."""

import copy
import functools
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.func import functional_call

from benchmark.model.encoder import build_encoder
from strategies import lora

CPU = torch.device("cpu")


# -- the function LoRA computes: W0 + (alpha / r) B A, layer by layer -----------------------------
VIT_LAYERS = ("attn.in_proj_weight", "attn.out_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
VIT_WEIGHTS = [f"transformer.resblocks.{i}.{w}" for i in range(4) for w in VIT_LAYERS]


def adapter_factors(encoder, targets):
    """{adapted weight's name: (A, B, m)}, read where the adapters live: peft's Linear and Conv2d
    layers (lora_A, lora_B, DoRA's lora_magnitude_vector), the attention's parametrizations of
    in_proj_weight and out_proj (lora_A, lora_B, lora_magnitude). m is None without DoRA."""
    params = dict(encoder.named_parameters())
    out = {}
    for t in targets:
        if f"{t}.lora_A.default.weight" in params:
            a, b = params[f"{t}.lora_A.default.weight"], params[f"{t}.lora_B.default.weight"]
            out[f"{t}.weight"] = (a, b, params.get(f"{t}.lora_magnitude_vector.default.weight"))
            continue
        for weight, where in [
            ("in_proj_weight", f"{t}.parametrizations.in_proj_weight.0"),
            ("out_proj.weight", f"{t}.out_proj.parametrizations.weight.0"),
        ]:
            m = params.get(f"{where}.lora_magnitude")
            out[f"{t}.{weight}"] = (params[f"{where}.lora_A"], params[f"{where}.lora_B"], m)
    return out


def by_hand(w0, a, b, scaling, m=None):
    """W0 + scaling B A. For a conv, A is a k x k conv to r channels and B a 1 x 1 conv back: B A
    is the out x (in k k) product of their matrices, reshaped to W0's shape. With a DoRA
    magnitude m: m V / ||V||, V = W0 + scaling B A, the norm of each output row (over every
    other axis) a constant of the backward pass (detached)."""
    product = b.reshape(b.shape[0], -1) @ a.reshape(a.shape[0], -1)
    v = w0 + scaling * product.reshape(w0.shape)
    if m is None:
        return v
    rows = v.detach().reshape(v.shape[0], -1)
    norm = torch.sqrt((rows * rows).sum(dim=1))
    factor = m.reshape(-1) / norm
    return factor.reshape(-1, *[1] * (v.dim() - 1)) * v


@pytest.mark.parametrize(
    "arch, targets, dora",
    [
        ("vit", "auto", False),
        ("vit", "attn", False),
        ("resnet", "auto", False),
        ("vit", "auto", True),
        ("resnet", "auto", True),
    ],
)
def test_training_forward_gradient_and_merge_are_w0_plus_scaled_b_a(
    arch, targets, dora, tiny_encoder
):
    """Against W0 + (alpha / r) B A written by hand from the adapter's own A and B after three
    AdamW steps (B != 0), for every adapted weight (the attention's fused in_proj and out_proj,
    c_fc, c_proj; the ResNet-20's 19 convolutions): the training forward equals the plain
    encoder's forward with those weights, the gradients wrt A and B equal autograd's on that
    function, and the merge writes those weights. (peft's MultiheadAttention layer, 0.15 to
    0.21.2, computes and merges W0 + 2 (alpha / r) B A for out_proj, with B's gradient half of
    that function's.) With DoRA, against m (W0 + (alpha / r) B A) / ||W0 + (alpha / r) B A||_c
    (norm detached) with the trained magnitudes m, whose gradients are checked too, in float64:
    peft's DoRA layer sums m's gradient from two outputs that nearly cancel, (m / n - 1) W0 x and
    (m / n) (alpha / r) B A x, which leaves the ResNet stem's 1e-6 gradients 2 % off in float32."""
    torch.manual_seed(0)
    if arch == "vit":
        encoder = copy.deepcopy(tiny_encoder.module)
        expected = VIT_WEIGHTS if targets == "auto" else VIT_WEIGHTS[0::4] + VIT_WEIGHTS[1::4]
    else:
        encoder = build_encoder("resnet20-cifar", "none").module
        expected = [f"{n}.weight" for n, m in encoder.named_modules() if isinstance(m, nn.Conv2d)]
        assert len(expected) == 19
    dtype = torch.float64 if dora else torch.float32
    encoder.to(dtype)
    plain = copy.deepcopy(encoder)
    w0 = {k: v.detach().clone() for k, v in plain.named_parameters()}
    x = torch.randn(6, 3, 32, 32, dtype=dtype)
    with torch.no_grad():
        y = torch.randn_like(encoder(x))

    def loss(out):
        return ((out - y) ** 2).mean()

    model = SimpleNamespace(encoder=encoder, heads=nn.ModuleList())
    context = SimpleNamespace(model=model, device=CPU)
    config = lora.Config(rank=4, alpha=12.0, target_modules=targets, dora=dora)
    scaling = 3.0  # alpha / r
    plugin = lora.build(context, config)[0]
    plugin.inject()
    optimizer = torch.optim.AdamW([p for p in encoder.parameters() if p.requires_grad], lr=1e-2)
    encoder.train()
    for _ in range(3):
        optimizer.zero_grad()
        loss(encoder(x)).backward()
        optimizer.step()
    factors = adapter_factors(encoder, plugin.targets)
    assert sorted(factors) == sorted(expected)
    assert all(b.abs().min() > 0 for _, b, _ in factors.values())  # every B moved off 0
    if dora:  # every magnitude moved off its start ||W0||_c (a row norm of the frozen W0)
        for key, (_, _, m) in factors.items():
            start = w0[key].reshape(w0[key].shape[0], -1).norm(dim=1)
            assert m is not None and (m.reshape(-1) - start).abs().min() > 0, key
    else:
        assert all(m is None for _, _, m in factors.values())
    optimizer.zero_grad()
    out = encoder(x)  # training forward (train mode)
    loss(out).backward()
    leaves = {
        k: [None if t is None else t.detach().clone().requires_grad_() for t in ts]
        for k, ts in factors.items()
    }
    hand = {k: by_hand(w0[k], a, b, scaling, m) for k, (a, b, m) in leaves.items()}
    plain.train()
    reference = functional_call(plain, hand, (x,))
    loss(reference).backward()
    torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-5)
    for key, ts in factors.items():
        for got, want in zip(ts, leaves[key], strict=True):
            if got is not None:
                assert (got.grad - want.grad).norm() <= 1e-4 * want.grad.norm(), key
    plugin.merge()
    merged = dict(encoder.named_parameters())
    for key in factors:
        update = hand[key].detach() - w0[key]
        message = functools.partial("{}: {}".format, key)
        torch.testing.assert_close(merged[key] - w0[key], update, rtol=1e-4, atol=1e-6, msg=message)
    for key in set(w0) - set(factors):
        assert torch.equal(merged[key], w0[key]), key  # not adapted: untouched
