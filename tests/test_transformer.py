"""The transformer (harness/networks/models/transformer.py): a block is PyTorch's pre-norm TransformerEncoderLayer;
Shazeer's d_ff; its FFN units are what the probes count; model.init's gains; bad pairs refused in one line."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harness.networks.activations import activation_spec
from harness.networks.models import build_model, layer_weights
from harness.networks.models.transformer import Block, Transformer, TransformerConfig
from harness.networks.probes import probe_gradients, probe_units
from harness.setup.config import ConfigError, config_hash
from harness.setup.resolve import resolve
from tests.conftest import compose_config


def transformer(act: str, **keys) -> Transformer:
    """A transformer as model=transformer builds it (LayerNorm on) for MNIST-1D's (1, 40), with these keys."""
    return build_model(TransformerConfig(norm="layer", **keys), activation_spec({"name": act}), (1, 40), 10)


def copy_from_torch(block: Block, ref: nn.TransformerEncoderLayer) -> None:
    """PyTorch packs q, k, v into in_proj (3D x D); ours are three D x D Linears."""
    with torch.no_grad():
        for ours, w, b in zip(
            (block.attn.q, block.attn.k, block.attn.v),
            ref.self_attn.in_proj_weight.chunk(3),
            ref.self_attn.in_proj_bias.chunk(3),
        ):
            ours.weight.copy_(w)
            ours.bias.copy_(b)
        for ours, theirs in [
            (block.attn.out, ref.self_attn.out_proj),
            (block.ffn_in, ref.linear1),
            (block.ffn_out, ref.linear2),
            (block.norm_attn, ref.norm1),
            (block.norm_ffn, ref.norm2),
        ]:
            ours.load_state_dict(theirs.state_dict())


@pytest.mark.parametrize("act", ["relu", "gelu"])
def test_a_block_equals_torch_pre_norm_encoder_layer_forward_and_gradients(act):
    torch.manual_seed(0)
    ref = nn.TransformerEncoderLayer(
        12, 3, dim_feedforward=20, dropout=0.0, activation=act, batch_first=True, norm_first=True
    )
    ours = Block(12, 3, 20, activation_spec({"name": act}), "layer")
    copy_from_torch(ours, ref)
    x = torch.randn(4, 7, 12)
    x_ours, x_ref = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out_ours, out_ref = ours(x_ours), ref(x_ref)
    torch.testing.assert_close(out_ours, out_ref, rtol=1e-5, atol=1e-5)
    weights = torch.randn_like(out_ref)
    (out_ours * weights).sum().backward()
    (out_ref * weights).sum().backward()
    torch.testing.assert_close(x_ours.grad, x_ref.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.ffn_in.weight.grad, ref.linear1.weight.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        torch.cat([ours.attn.q.weight.grad, ours.attn.k.weight.grad, ours.attn.v.weight.grad]),
        ref.self_attn.in_proj_weight.grad,
        rtol=1e-5,
        atol=1e-5,
    )


def test_tokens_are_consecutive_steps_and_row_major_patches():
    net = Transformer((2, 12), 10, activation_spec({"name": "relu"}), depth=1, width=8, patch=3)
    seq = torch.arange(24.0).view(1, 2, 12)
    assert net.tokens(seq)[0, 1].tolist() == [3, 4, 5, 15, 16, 17]  # steps 3..5 of both channels
    img = Transformer((1, 4, 6), 10, activation_spec({"name": "relu"}), depth=1, width=8, patch=2)
    pic = torch.arange(24.0).view(1, 1, 4, 6)
    tokens = img.tokens(pic)
    assert tokens.shape == (1, 6, 4) and tokens[0, 1].tolist() == [2, 3, 8, 9]  # second patch of the top row
    assert tokens[0, 3].tolist() == [12, 13, 18, 19]  # first patch of the second row


@pytest.mark.parametrize("act", ["swiglu", "geglu", "reglu", "glu", "bilinear"])
def test_match_params_is_shazeers_two_thirds_rule(act):
    gated = transformer(act, depth=2, width=48, heads=4, ffn_ratio=4.0, match_params=True)
    plain = transformer("relu", depth=2, width=48, heads=4)
    assert gated.d_ff == 128 and gated.hidden[0].ffn_in.out_features == 256 and gated.width_used == 48
    ffn = [sum(b.ffn_in.weight.numel() + b.ffn_out.weight.numel() for b in net.hidden) for net in (gated, plain)]
    assert ffn[0] == ffn[1] == 2 * 3 * 48 * 128  # 3 x D x 2/3 r D = 2 x D x r D: equal, weights exactly
    unmatched = transformer(act, width=48, heads=4)
    assert unmatched.d_ff == 192 and unmatched.hidden[0].ffn_in.out_features == 384


def ffn_preactivations(net: Transformer, x: torch.Tensor) -> list[torch.Tensor]:
    """The reference: each block's FFN input to the activation, (B, T, F), caught on ffn_in's output."""
    caught = []
    handles = [b.ffn_in.register_forward_hook(lambda m, i, o: caught.append(o.detach())) for b in net.hidden]
    net.eval()
    with torch.no_grad():
        net(x)
    for h in handles:
        h.remove()
    return caught


def test_probes_count_ffn_features_over_batch_and_tokens():
    torch.manual_seed(0)
    net = transformer("relu", depth=2, width=16, heads=2, ffn_ratio=2.0)
    with torch.no_grad():
        net.hidden[1].ffn_in.bias[:10] -= 3.0  # push some units towards dead on most tokens
    x = torch.randn(64, 1, 40)
    stats = probe_units(net, x, 1.0)
    for s, z in zip(stats.values(), ffn_preactivations(net, x)):
        dead = (z <= 0).flatten(0, 1).all(0)  # dead on every token of every sample
        assert s.units == 32 and s.dead == int(dead.sum())
        out = z.clamp_min(0)
        assert s.mean == pytest.approx(out.mean().item(), rel=1e-4)
        assert s.std == pytest.approx(out.std().item(), rel=1e-4)
    assert stats["hidden.1"].dead > 0  # the test can see a dead unit
    per_token_dead = (ffn_preactivations(net, x)[1] <= 0).all(0).sum()  # what a probe blind to tokens would find
    assert per_token_dead > stats["hidden.1"].dead


def test_a_blocks_gradient_norm_is_over_all_its_weight_matrices():
    torch.manual_seed(0)
    net = transformer("gelu", depth=2, width=16)
    x, y = torch.randn(8, 1, 40), torch.randint(0, 10, (8,))
    layers, _ = probe_gradients(net, x, y)
    assert list(layers) == ["hidden.0", "hidden.1", "head"]
    F.cross_entropy(net.eval()(x), y).backward()
    b = net.hidden[0]
    mats = [b.attn.q, b.attn.k, b.attn.v, b.attn.out, b.ffn_in, b.ffn_out]
    assert [w is m.weight for w, m in zip(layer_weights(net)["hidden.0"], mats)] == [True] * 6
    expected = torch.sqrt(sum(m.weight.grad.square().sum() for m in mats)).item()
    assert layers["hidden.0"] == pytest.approx(expected, rel=1e-5)


def test_hidden_softmax_runs_over_the_ffn_features():
    net = transformer("softmax", depth=1, width=8)
    outs = []
    net.hidden[0].act.register_forward_hook(lambda m, i, o: outs.append(o))
    net(torch.randn(3, 1, 40))
    assert outs[0].shape == (3 * 10, 32)  # (batch x tokens, d_ff)
    torch.testing.assert_close(outs[0].sum(1), torch.ones(30))


@pytest.mark.parametrize("act, gate_gain", [("relu", 2**0.5), ("swiglu", 2**0.5)])
def test_model_init_draws_attention_and_ffn_output_with_gain_one(act, gate_gain):
    torch.manual_seed(0)
    m = TransformerConfig(norm="layer", depth=1, width=256, heads=4, ffn_ratio=2.0, init="kaiming")
    net = build_model(m, activation_spec({"name": act}), (1, 40), 10, gate_gain)
    b = net.hidden[0]
    for proj in (b.attn.q, b.attn.k, b.attn.v, b.attn.out):
        assert proj.weight.std().item() == pytest.approx(1 / 256**0.5, rel=0.05)
        assert torch.count_nonzero(proj.bias) == 0
    assert b.ffn_out.weight.std().item() == pytest.approx(1 / b.ffn_out.in_features**0.5, rel=0.05)
    halves = b.ffn_in.weight.chunk(2) if act == "swiglu" else [None, b.ffn_in.weight]
    if halves[0] is not None:  # the value half as the identity
        assert halves[0].std().item() == pytest.approx(1 / 256**0.5, rel=0.05)
    assert halves[1].std().item() == pytest.approx(gate_gain / 256**0.5, rel=0.05)
    assert net.position.std().item() == pytest.approx(0.02, rel=0.1)  # model.init leaves the positions alone


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.patch=3", r"^model.patch=3 does not divide the input \(40\); choose a divisor of 40$"),
        ("model.heads=3", r"^model.heads=3 must divide model.width=32$"),
        ("model.cell=gru", r"^model.cell and model.bidirectional are rnn options"),
        ("model.bidirectional=true", r"^model.cell and model.bidirectional are rnn options"),
        ("model.norm=batch", r"^model.norm=batch is not supported by the transformer"),
    ],
)
def test_bad_transformer_options_are_refused_in_one_line(override, message):
    with pytest.raises(ConfigError, match=message) as info:
        resolve(compose_config("model=transformer", override, "trainer.device=cpu"), device=False)
    assert "\n" not in str(info.value)


def test_a_patch_that_does_not_tile_an_image_is_refused():
    with pytest.raises(ConfigError, match=r"^model.patch=3 does not divide the input \(8x8\); choose a divisor of 8"):
        resolve(compose_config("model=transformer", "dataset=digits", "model.patch=3"), device=False)
    resolve(compose_config("model=transformer", "dataset=digits", "model.patch=2"), device=False)


def test_transformer_keys_at_their_defaults_leave_config_hash_unchanged():
    """ADDED_KEYS: heads, ffn_ratio and patch came after v1; at their defaults they are not hashed, so the hash of
    every other family's config, which records them at those values, is the one v1 wrote (tests/test_config_hashes.py
    pins those)."""
    config = compose_config("model=transformer")
    before = config_hash(config)
    config.model.patch = 8
    assert config_hash(config) != before
    config.model.patch = 4
    assert config_hash(config) == before


def test_a_transformer_run_can_be_grouped():
    """The transformer has a stacked forward (harness/networks/stacked.py); its exactness is tests/test_grouped.py's."""
    from harness.training.group import why_not_grouped

    assert why_not_grouped(resolve(compose_config("model=transformer", "trainer.device=cpu"))) is None
    gated_over_tokens = compose_config(
        "model=transformer", "activation=glu", "+activation.dim=-1", "trainer.device=cpu"
    )
    assert "GLU over dim -1, not the units" in why_not_grouped(resolve(gated_over_tokens))
