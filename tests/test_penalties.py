"""The strategies' pure functions on hand-computed numbers, and strategy-argument parsing."""

import math

import numpy as np
import pytest
import torch

from benchmark.errors import CFBenchError
from strategies import STRATEGIES, make_config, resolve
from strategies.penalties import as_tokens, interpolate, l2sp_penalty, ldifs_distance


# -- L2-SP ----------------------------------------------------------------------------------------
def test_l2sp_is_zero_at_the_anchor():
    params = [torch.randn(3, 4), torch.randn(5)]
    assert l2sp_penalty(params, [p.clone() for p in params]).item() == 0.0


def test_l2sp_is_the_sum_of_squared_differences():
    params = [torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([0.5])]
    anchor = [torch.tensor([[1.0, 0.0], [0.0, 4.0]]), torch.tensor([-0.5])]
    # (2 - 0)^2 + (3 - 0)^2 + (0.5 + 0.5)^2 = 4 + 9 + 1
    assert l2sp_penalty(params, anchor).item() == pytest.approx(14.0)


def test_l2sp_gradient_is_twice_the_difference():
    p = torch.tensor([1.0, -2.0], requires_grad=True)
    l2sp_penalty([p], [torch.tensor([0.0, 1.0])]).backward()
    torch.testing.assert_close(p.grad, torch.tensor([2.0, -6.0]))


# -- LDIFS ----------------------------------------------------------------------------------------
def _direct_ldifs(feats, refs, axis):
    """The formula written out with numpy loops: per tap, normalise every vector along the axis,
    average the squared differences over (B, N, C); then average over taps."""
    per_tap = []
    for f, r in zip(feats, refs, strict=True):
        f, r = f.numpy().astype(np.float64), r.numpy().astype(np.float64)
        b, n, c = f.shape
        total = 0.0
        for i in range(b):
            if axis == "token":
                vectors = [(f[i, :, k], r[i, :, k]) for k in range(c)]
            else:
                vectors = [(f[i, t, :], r[i, t, :]) for t in range(n)]
            for u, v in vectors:
                total += np.sum((u / np.linalg.norm(u) - v / np.linalg.norm(v)) ** 2)
        per_tap.append(total / (b * n * c))
    return float(np.mean(per_tap))


@pytest.fixture(scope="module")
def taps():
    g = torch.Generator().manual_seed(0)
    shapes = [(3, 5, 4), (3, 5, 4), (3, 7, 6)]  # taps may differ in size
    feats = [torch.randn(s, generator=g) for s in shapes]
    refs = [f + 0.5 * torch.randn(f.shape, generator=g) for f in feats]
    return feats, refs


def test_ldifs_is_zero_when_features_equal_the_reference(taps):
    feats, _ = taps
    for axis in ("token", "channel"):
        assert ldifs_distance(feats, [f.clone() for f in feats], axis).item() == 0.0


@pytest.mark.parametrize("axis", ["token", "channel"])
def test_ldifs_matches_a_direct_computation(taps, axis):
    feats, refs = taps
    expected = _direct_ldifs(feats, refs, axis)
    assert ldifs_distance(feats, refs, axis).item() == pytest.approx(expected, rel=1e-5)


def test_ldifs_axes_on_hand_numbers():
    # B = 1, N = 2 tokens (rows), C = 2 channels (columns)
    f = torch.tensor([[[3.0, 1.0], [4.0, 0.0]]])
    r = torch.tensor([[[4.0, 0.0], [3.0, 1.0]]])
    # token axis: each channel's column over the tokens to unit length
    #   f: (3, 4) / 5 = (0.6, 0.8) and (1, 0);  r: (0.8, 0.6) and (0, 1)
    #   squared differences 0.04 + 0.04 + 1 + 1 = 2.08, over B * N * C = 4 entries: 0.52
    assert ldifs_distance([f], [r], "token").item() == pytest.approx(0.52, rel=1e-6)
    assert ldifs_distance([f], [r], "token", "unit").item() == pytest.approx(1.04, rel=1e-6)
    # channel axis: each token's row over the channels to unit length
    #   f: (3, 1) / sqrt(10) and (1, 0);  r: (1, 0) and (3, 1) / sqrt(10)
    #   each token: (3 / sqrt(10) - 1)^2 + 1 / 10 = 2 - 6 / sqrt(10); both: 4 - 12 / sqrt(10);
    #   over 4 entries: 1 - 3 / sqrt(10) = 0.0513167
    expected = 1 - 3 / math.sqrt(10)
    assert ldifs_distance([f], [r], "channel").item() == pytest.approx(expected, rel=1e-5)
    assert ldifs_distance([f], [r], "channel", "unit").item() == pytest.approx(
        2 * expected, rel=1e-5
    )


def test_ldifs_token_axis_ignores_the_scale_of_each_channel_and_channel_axis_of_each_token(taps):
    feats, refs = taps
    g = torch.Generator().manual_seed(2)
    per_channel = [f * torch.rand(1, 1, f.shape[2], generator=g).add(0.5) for f in feats]
    per_token = [f * torch.rand(1, f.shape[1], 1, generator=g).add(0.5) for f in feats]
    token, channel = ldifs_distance(feats, refs, "token"), ldifs_distance(feats, refs, "channel")
    assert abs(token.item() - channel.item()) > 1e-3  # the two axes are different distances
    # positive rescaling of a channel (over all tokens) leaves the token-normalised taps unchanged
    assert ldifs_distance(per_channel, refs, "token").item() == pytest.approx(
        token.item(), rel=1e-5
    )
    assert ldifs_distance(per_channel, refs, "channel").item() != pytest.approx(channel.item())
    # and rescaling a token (over all channels) leaves the channel-normalised ones unchanged
    assert ldifs_distance(per_token, refs, "channel").item() == pytest.approx(
        channel.item(), rel=1e-5
    )
    assert ldifs_distance(per_token, refs, "token").item() != pytest.approx(token.item())


def test_ldifs_unit_reduction_scales_by_the_normalised_axis_length(taps):
    feats, refs = taps
    one = [feats[2]], [refs[2]]  # N = 7 tokens, C = 6 channels
    mean = ldifs_distance(*one, "token").item()
    assert ldifs_distance(*one, "token", "unit").item() == pytest.approx(7 * mean, rel=1e-6)
    mean = ldifs_distance(*one, "channel").item()
    assert ldifs_distance(*one, "channel", "unit").item() == pytest.approx(6 * mean, rel=1e-6)


def test_ldifs_of_opposite_unit_vectors_is_four_per_vector():
    f = torch.tensor([[[1.0], [0.0]]])  # B = 1, N = 2 tokens, C = 1 channel
    # token axis: the column (1, 0) vs (-1, 0): squared distance 4 spread over 2 entries
    assert ldifs_distance([f], [-f], "token").item() == pytest.approx(2.0)
    assert ldifs_distance([f], [-f], "token", "unit").item() == pytest.approx(4.0)


def test_cnn_maps_are_read_with_positions_as_tokens():
    x = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)  # B, C, H, W
    tokens = as_tokens(x)
    assert tokens.shape == (2, 4, 3)
    assert torch.equal(tokens[1, 2], x[1, :, 1, 0])  # position (h=1, w=0) of sample 1
    assert as_tokens(torch.ones(2, 5)).shape == (2, 1, 5)
    y = x + torch.randn(x.shape)
    expected = ldifs_distance([x.flatten(2).transpose(1, 2)], [y.flatten(2).transpose(1, 2)])
    assert ldifs_distance([x], [y]).item() == pytest.approx(expected.item())


def test_ldifs_rejects_mismatched_taps(taps):
    feats, refs = taps
    with pytest.raises(ValueError):
        ldifs_distance(feats, refs[:2])
    with pytest.raises(ValueError):
        ldifs_distance([feats[0]], [refs[2]])
    with pytest.raises(ValueError):
        ldifs_distance(feats, refs, axis="depth")


# -- WiSE-FT --------------------------------------------------------------------------------------
def test_interpolate_by_hand_and_at_the_ends():
    theta0 = {"w": torch.tensor([0.0, 2.0]), "steps": torch.tensor(3)}
    theta_ft = {"w": torch.tensor([1.0, -2.0]), "steps": torch.tensor(7)}
    mixed = interpolate(theta0, theta_ft, 0.25)
    torch.testing.assert_close(mixed["w"], torch.tensor([0.25, 1.0]))
    assert mixed["steps"].item() == 7  # integer buffers are not interpolated
    g = torch.Generator().manual_seed(1)
    a, b = {"w": torch.randn(50, generator=g)}, {"w": torch.randn(50, generator=g)}
    assert torch.equal(interpolate(a, b, 1.0)["w"], b["w"])
    assert torch.equal(interpolate(a, b, 0.0)["w"], a["w"])


# -- strategy arguments ---------------------------------------------------------------------------
def test_every_registered_strategy_builds_its_default_config():
    for spec in STRATEGIES.values():
        make_config(spec.config, {})


def test_arguments_are_coerced_to_the_field_types():
    cfg = make_config(STRATEGIES["ldifs"].config, {"lam": 1, "anchor": "pretrained"})
    assert cfg.lam == 1.0 and isinstance(cfg.lam, float) and cfg.anchor == "pretrained"
    # YAML 1.1 reads 1e-3 (no dot) as a string: accepted as the number it spells
    assert make_config(STRATEGIES["l2sp"].config, {"alpha": "1e-3"}).alpha == 1e-3
    assert make_config(STRATEGIES["replay"].config, {"mem_size": 50.0}).mem_size == 50
    assert make_config(STRATEGIES["ewc"].config, {"lam": None}).lam is None


@pytest.mark.parametrize(
    "name, args, words",
    [
        ("ldifs", {"lambda": 1}, "unknown strategy argument 'lambda'"),
        ("ldifs", {"lam": "abc"}, "lam='abc' is not float"),
        ("ldifs", {"lam": True}, "is not float"),
        ("ldifs", {"lam": [1]}, "is not float"),
        ("ldifs", {"anchor": "foo"}, "anchor='foo' is not one of"),
        ("ldifs", {"axis": "depth"}, "is not one of"),
        ("ldifs", {"lam": -1}, "lam must be a finite number >= 0"),
        ("l2sp", {"alpha": float("nan")}, "alpha must be a finite number >= 0"),
        ("l2sp", {"alpha": "nan"}, "alpha must be a finite number >= 0"),
        ("ewc", {"lam": math.inf}, "lam must be a finite number >= 0"),
        ("ewc", {"decay": 2}, "decay must be in [0, 1]"),
        ("replay", {"mem_size": 2.5}, "mem_size=2.5 is not int"),
        ("replay", {"mem_size": 0}, "mem_size must be >= 1"),
        ("wise_ft", {"alpha": 1.5}, "alpha must be in [0, 1]"),
        ("wise_ft", {"heads": "yes"}, "heads='yes' is not bool"),
        ("wise_ft", {"heads": 1}, "heads=1 is not bool"),
        ("lwf", {"temperature": 0}, "temperature must be > 0"),
        ("ft", {"lam": 1}, "valid fields: none"),
    ],
)
def test_bad_arguments_are_rejected_with_the_valid_fields(name, args, words):
    with pytest.raises(CFBenchError) as error:
        resolve(name, args)
    message = str(error.value)
    assert words in message
    if name != "ft":
        assert "valid fields: " in message
        for field in STRATEGIES[name].config.__dataclass_fields__:
            assert f"{field}: " in message


def test_settings_hold_every_hyper_parameter_defaults_included():
    # Written out by hand from the Config dataclasses and examples/my_strategy.py's signature.
    assert resolve("ldifs", {"lam": 1, "anchor": "pretrained"}).settings == {
        "lam": 1.0,
        "anchor": "pretrained",
        "axis": "token",
        "reduction": "mean",
    }
    assert resolve("ldifs", {"lam": "1e1"}).settings == resolve("ldifs").settings
    assert resolve("ft").settings == {}
    assert resolve("wise_ft").settings == {"alpha": 0.5, "heads": True}
    assert resolve("examples.my_strategy:build").settings == {"lam": 1e-5}
    assert resolve("examples.my_strategy:build", {"lam": 2}).settings == {"lam": 2.0}


def test_external_factories_have_their_arguments_checked_too():
    with pytest.raises(CFBenchError, match="unknown argument 'lamda'.*valid fields: lam = 1e-05"):
        resolve("examples.my_strategy:build", {"lamda": 1})
    with pytest.raises(CFBenchError, match="lam='x' is not float"):
        resolve("examples.my_strategy:build", {"lam": "x"})
    with pytest.raises(CFBenchError, match="unknown argument 'lam'.*si_lambda"):
        resolve("avalanche.training.plugins:SynapticIntelligencePlugin", {"lam": 1})
    with pytest.raises(CFBenchError, match="cannot import strategy"):
        resolve("examples.nothing_here:build", {})
    with pytest.raises(CFBenchError, match="unknown strategy 'sgd'; valid names: ft, l2sp"):
        resolve("sgd", {})
