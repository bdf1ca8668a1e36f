"""cfbench's CLIP is OpenAI's CLIP: the same weights built through cfbench's path (a checkpoint
file, as ``--pretrained /path`` does, and the ``openai`` tag) give OpenAI's own implementation's
image features, text features and zero-shot logits; built with GELU instead of the QuickGELU the
weights were trained with, they do not.

The reference is OpenAI's CLIP code (the ``clip-anytorch`` package, a dev dependency), at ViT-B/32
size with seeded random weights in OpenAI's layout and OpenAI's fp16 storage.
"""

from __future__ import annotations

import ast
import copy
import importlib.util
import math
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from benchmark.errors import CFBenchError
from benchmark.model import encoder as enc

CLASSNAMES = ["cat", "golden retriever", "red car"]
TEMPLATES = ["a photo of a {}.", "a blurry photo of the {}."]
LOGIT_SCALE = 63.0  # not CLIP's init (1/0.07) nor its trained value (100)


def _openai_module(name: str):
    """OpenAI's ``clip/<name>.py``, loaded on its own: ``clip/__init__`` imports pkg_resources,
    which recent setuptools no longer ship."""
    spec = importlib.util.find_spec("clip")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("OpenAI's CLIP code (pip install clip-anytorch, in the dev extra) is missing")
    path = Path(spec.submodule_search_locations[0]) / f"{name}.py"
    module_spec = importlib.util.spec_from_file_location(f"clip.{name}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def _randomise(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Make the parts CLIP's init leaves trivial (LayerNorm 1/0, zero biases) non-trivial."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
            elif "ln_" in name and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
        model.logit_scale.fill_(math.log(LOGIT_SCALE))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """OpenAI's ViT-B/32 with random weights, saved as OpenAI releases it (a traced TorchScript
    archive in fp16) and as a plain state dict (the layout open_clip's files share)."""
    clip_model = _openai_module("model")
    torch.manual_seed(0)
    # OpenAI's ViT-B/32 hyper-parameters (clip.model.build_model reads them off its state dict).
    model = clip_model.CLIP(512, 224, 12, 768, 32, 77, 49408, 512, 8, 12)
    _randomise(model, torch.Generator().manual_seed(1))
    clip_model.convert_weights(model)  # OpenAI's storage (fp16 but LayerNorms, embeddings)
    released = {k: v.clone() for k, v in model.state_dict().items()}
    model = model.float().eval()  # as clip.load(..., device="cpu") does
    folder = tmp_path_factory.mktemp("openai")
    state = folder / "vit_b_32_state_dict.pt"
    torch.save(released, state)
    archive = folder / "ViT-B-32.pt"
    image, text = torch.zeros(1, 3, 224, 224), torch.zeros(1, 77, dtype=torch.long)
    traced = torch.jit.trace(copy.deepcopy(model), (image, text), check_trace=False)
    for name, p in traced.named_parameters():
        p.data = released[name]
    torch.jit.save(traced, str(archive))
    return model, archive, state


def _openai_tokens(texts: list[str]) -> torch.Tensor:
    """OpenAI's clip.tokenize: <sot> BPE <eot>, zero-padded to 77 (OpenAI's tokenizer)."""
    tokenizer = _openai_module("simple_tokenizer").SimpleTokenizer()
    sot, eot = tokenizer.encoder["<|startoftext|>"], tokenizer.encoder["<|endoftext|>"]
    out = torch.zeros(len(texts), 77, dtype=torch.long)
    for i, text in enumerate(texts):
        ids = [sot, *tokenizer.encode(text), eot]
        out[i, : len(ids)] = torch.tensor(ids)
    return out


def _images(encoder: enc.Encoder) -> torch.Tensor:
    """Two images through cfbench's eval transform: the same tensors go to both models."""
    gen = torch.Generator().manual_seed(2)
    pixels = [torch.randint(0, 256, (240, 320, 3), generator=gen, dtype=torch.uint8)]
    pixels.append(torch.linspace(0, 255, 300 * 200 * 3).reshape(300, 200, 3).to(torch.uint8))
    return torch.stack([encoder.eval_transform(Image.fromarray(p.numpy())) for p in pixels])


_REFERENCE_OUTPUTS: list = []  # [(model, images, outputs)]: computed once per input


@torch.no_grad()
def _openai_outputs(model, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Image and text features and zero-shot logits by OpenAI's recipe on OpenAI's model."""
    for seen, seen_images, outputs in _REFERENCE_OUTPUTS:
        if seen is model and torch.equal(seen_images, images):
            return outputs
    prompts = [t.format(c) for c in CLASSNAMES for t in TEMPLATES]
    text = model.encode_text(_openai_tokens(prompts))
    per_class = F.normalize(text, dim=-1).reshape(len(CLASSNAMES), len(TEMPLATES), -1)
    weights = F.normalize(per_class.mean(dim=1), dim=-1) * model.logit_scale.exp()
    image = model.encode_image(images)
    outputs = {"image": image, "text": text, "logits": F.normalize(image, dim=-1) @ weights.T}
    _REFERENCE_OUTPUTS.append((model, images, outputs))
    return outputs


@torch.no_grad()
def _cfbench_outputs(encoder: enc.Encoder, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """The same quantities through cfbench: the trained image module, the frozen text tower and
    its zero-shot class weights (scaled by the tower's logit scale)."""
    prompts = [t.format(c) for c in CLASSNAMES for t in TEMPLATES]
    text = encoder.text.model.encode_text(encoder.text.tokenizer(prompts))
    weights = encoder.text.class_weights(CLASSNAMES, TEMPLATES) * encoder.text.logit_scale
    image = encoder.module.eval()(images)
    return {"image": image, "text": text, "logits": F.normalize(image, dim=-1) @ weights.T}


def _max_differences(ours: dict, theirs: dict) -> dict[str, float]:
    return {k: (ours[k] - theirs[k]).abs().max().item() for k in theirs}


# Float tolerance: fp32 on both sides, different attention kernels (measured: 3e-6 on the
# features, 6e-6 on the logits, which carry the logit scale 63; GELU moves them by 2e-2 to 5e-2).
TOLERANCE = {"image": 2e-5, "text": 2e-5, "logits": 2e-4}


def _assert_agree(ours: dict, theirs: dict) -> None:
    differences = _max_differences(ours, theirs)
    for key, tol in TOLERANCE.items():
        assert differences[key] < tol, (key, differences)


def test_tokens_are_openais(reference):
    import open_clip

    prompts = [t.format(c) for c in CLASSNAMES for t in TEMPLATES]
    assert torch.equal(open_clip.get_tokenizer("ViT-B-32")(prompts), _openai_tokens(prompts))


def test_openai_torchscript_release_builds_openais_clip(reference):
    """OpenAI's release format (a TorchScript archive) through ``--pretrained /path`` with the
    plain model name: cfbench reads QuickGELU off the archive and matches OpenAI's model."""
    model, archive, _ = reference
    encoder = enc.build_encoder("ViT-B-32", str(archive))
    assert encoder.activation.quick_gelu and "TorchScript" in encoder.activation.why
    assert encoder.text.logit_scale == pytest.approx(model.logit_scale.exp().item(), rel=1e-6)
    images = _images(encoder)
    _assert_agree(_cfbench_outputs(encoder, images), _openai_outputs(model, images))


def test_openai_tag_builds_quickgelu_without_open_clips_warning(reference, monkeypatch):
    """The default path, ``--pretrained openai``: open_clip's download is replaced by the
    reference's state dict, so nothing is fetched and everything else is the real path. The
    same model with GELU put back in place of QuickGELU (what cfbench built before) is far from
    OpenAI's, so the agreement is evidence of the activation."""
    import open_clip.factory
    from open_clip.transformer import QuickGELU

    model, _, state = reference
    monkeypatch.setattr(open_clip.factory, "download_pretrained", lambda *a, **k: str(state))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        encoder = enc.build_encoder("ViT-B-32", "openai")
    assert not [w for w in caught if "quickgelu" in str(w.message).lower()]
    assert encoder.activation.quick_gelu and "ViT-B-32/openai" in encoder.activation.why
    images = _images(encoder)
    theirs = _openai_outputs(model, images)
    quick = _max_differences(_cfbench_outputs(encoder, images), theirs)
    for tower in (encoder.module, encoder.text.model):
        for module in list(tower.modules()):
            for child_name, child in module.named_children():
                if isinstance(child, QuickGELU):
                    setattr(module, child_name, torch.nn.GELU())
    gelu = _max_differences(_cfbench_outputs(encoder, images), theirs)
    print(f"max |cfbench - OpenAI|, QuickGELU build: {quick}; GELU build: {gelu}")
    for key, tol in TOLERANCE.items():
        assert quick[key] < tol, (key, quick)
        assert gelu[key] > 20 * tol, (key, gelu)


def test_a_state_dict_file_with_the_plain_name_is_gelu(reference):
    """A state-dict file does not say its activation: the plain name builds GELU, as open_clip's
    name says, and the log line says how to state QuickGELU."""
    _, _, state = reference
    activation = enc.choose_activation("ViT-B-32", str(state))
    assert not activation.quick_gelu and "--model ViT-B-32-quickgelu" in activation.why


def test_quickgelu_name_states_the_activation_of_a_state_dict_file(reference):
    """The user states QuickGELU for a state-dict file with open_clip's -quickgelu name."""
    _, _, state = reference
    activation = enc.choose_activation("ViT-B-32-quickgelu", str(state))
    assert activation.quick_gelu and "model name" in activation.why


# Which tags were trained with QuickGELU, from their papers' code (OpenAI's CLIP and the
# laion400m/MetaCLIP runs used QuickGELU; open_clip's later laion2b/DataComp runs GELU).
KNOWN = {
    ("ViT-B-32", "openai"): True,
    ("ViT-B-16", "openai"): True,
    ("RN50", "openai"): True,
    ("ViT-B-32", "laion400m_e32"): True,
    ("ViT-B-32-quickgelu", "metaclip_400m"): True,
    ("ViT-B-32", "laion2b_s34b_b79k"): False,
    ("ViT-L-14", "datacomp_xl_s13b_b90k"): False,
}


@pytest.mark.parametrize(("model", "tag"), list(KNOWN))
def test_tag_rule_known_weights(model, tag):
    assert enc.choose_activation(model, tag).quick_gelu is KNOWN[(model, tag)]


def test_tag_rule_follows_open_clips_pretrained_config_for_every_tag():
    """Every (model, tag) open_clip knows gets the activation its pretrained config names, or,
    where that config does not say (roberta-ViT-B-32/laion2b_s12b_b32k), its model config's."""
    import open_clip

    pairs = open_clip.list_pretrained()
    assert len(pairs) > 100
    for model, tag in pairs:
        tag_cfg = open_clip.get_pretrained_cfg(model, tag)
        model_cfg = open_clip.get_model_config(model)
        expected = bool(tag_cfg.get("quick_gelu", model_cfg.get("quick_gelu", False)))
        assert enc.choose_activation(model, tag).quick_gelu is expected, (model, tag)


def test_openai_release_hashes_are_openais():
    """The SHA-256s cfbench recognises are those of OpenAI's download URLs in OpenAI's own
    clip/clip.py (read as text: importing it needs pkg_resources)."""
    spec = importlib.util.find_spec("clip")
    if spec is None:
        pytest.skip("OpenAI's CLIP code (clip-anytorch) is missing")
    source = (Path(spec.submodule_search_locations[0]) / "clip.py").read_text()
    tree = ast.parse(source)
    models = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "_MODELS"
    )
    releases = enc.openai_releases()
    for name, url in models.items():
        digest = url.split("/")[-2]
        open_clip_name = name.replace("/", "-").replace("@336px", "-336")
        assert releases[digest][0] == open_clip_name and releases[digest][2], name


def test_a_file_with_an_openai_release_hash_is_quickgelu(tmp_path, monkeypatch):
    path = tmp_path / "renamed.bin"
    path.write_bytes(b"not really weights")
    vit_b_32 = "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af"
    assert enc.checkpoint_activation(path) is None  # a file that says nothing
    monkeypatch.setattr(enc, "file_sha256", lambda p: vit_b_32)
    activation = enc.checkpoint_activation(path)
    assert activation.quick_gelu and "OpenAI's ViT-B-32 release" in activation.why


def test_quickgelu_name_with_gelu_weights_is_refused(tmp_path):
    """A TorchScript archive whose modules are GELU, named as QuickGELU: one line, the fix."""
    archive = tmp_path / "gelu.pt"
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.GELU())
    torch.jit.save(torch.jit.trace(net, torch.zeros(1, 4)), str(archive))
    assert enc.checkpoint_activation(archive).quick_gelu is False
    with pytest.raises(CFBenchError, match="use --model ViT-B-32$"):
        enc.choose_activation("ViT-B-32-quickgelu", str(archive))


def test_random_weights_follow_the_name():
    assert not enc.choose_activation("ViT-B-32", "none").quick_gelu
    assert enc.choose_activation("ViT-B-32-quickgelu", None).quick_gelu
    tiny = enc.build_encoder("cfbench-tiny-vit", "none")
    assert tiny.activation.quick_gelu is False and "model name" in tiny.activation.why


def test_the_run_logs_and_records_the_activation(tmp_path):
    """prepare (which decides config.json) on the smoke sequence: no training, no files."""
    from benchmark.config import RunConfig
    from benchmark.session import prepare
    from benchmark.strategy_api import Resolved
    from tasks import get_sequence

    cfg = RunConfig(
        model="cfbench-tiny-vit",
        pretrained="none",
        data_root=tmp_path,
        device="cpu",
        out=tmp_path / "out",
        pipeline="pil",
        cache="none",
    )
    lines = []
    setup = prepare(
        cfg, get_sequence("smoke"), Resolved(build=lambda c: [], settings={}), lines.append
    )
    assert setup.config["quick_gelu"] is False
    assert "cfbench-tiny-vit: activation GELU (the model name cfbench-tiny-vit)" in lines


def test_a_resume_on_the_other_activation_is_refused(tmp_path):
    """Checkpoints written before the activation was chosen hold no quick_gelu: they were GELU
    builds. They resume as GELU; a QuickGELU build of the same weights is refused."""
    from benchmark.checkpoint.state import CheckpointError
    from benchmark.checkpoint.store import CheckpointStore

    old = {"model": "ViT-B-32", "pretrained": "openai", "vrf": False, "templates": {"t": 1}}
    CheckpointStore(tmp_path, {**old, "quick_gelu": False}, "last")._check_settings(old)
    with pytest.raises(CheckpointError, match="quick_gelu: False -> True"):
        CheckpointStore(tmp_path, {**old, "quick_gelu": True}, "last")._check_settings(old)
