"""FaceFormer's attention biases and masks, and the vector quantiser."""

import math

import pytest
import torch

from voxmesh.models.layers.attention import (
    BiasedCausalDecoder,
    PeriodicPositionalEncoding,
    alibi_slopes,
    alignment_mask,
    causal_mask,
    expand_for_heads,
    period_bias,
)
from voxmesh.models.layers.quantizer import VectorQuantizer

INF = float("-inf")


# ---- attention -----------------------------------------------------------------------
def test_alibi_slopes_follow_the_geometric_rule():
    assert alibi_slopes(4).tolist() == [2.0 ** -2, 2.0 ** -4, 2.0 ** -6, 2.0 ** -8]
    assert alibi_slopes(1).tolist() == [2.0 ** -8]
    six = alibi_slopes(6).tolist()  # 4 slopes of H=4, then every other slope of H=8
    assert six == pytest.approx([2.0 ** -2, 2.0 ** -4, 2.0 ** -6, 2.0 ** -8, 2.0 ** -1, 2.0 ** -3])


def test_period_bias_by_hand():
    bias = period_bias(5, 2, period=2)  # slopes 2^-4, 2^-8
    assert bias.shape == (2, 5, 5)
    for h, slope in enumerate([2.0 ** -4, 2.0 ** -8]):
        expected = torch.tensor([
            [0, INF, INF, INF, INF],
            [0, 0, INF, INF, INF],
            [-slope, 0, 0, INF, INF],  # i=2: j=0 is one period back
            [-slope, -slope, 0, 0, INF],
            [-2 * slope, -slope, -slope, 0, 0],
        ])
        assert torch.equal(bias[h], expected)
    # custom slopes and period 1 give ALiBi's linear distance penalty
    linear = period_bias(3, 1, period=1, slopes=torch.tensor([1.0]))[0]
    assert torch.equal(linear, torch.tensor([[0, INF, INF], [-1.0, 0, INF], [-2.0, -1.0, 0]]))


def test_causal_and_alignment_masks():
    assert torch.equal(causal_mask(3), torch.tensor([[0, INF, INF], [0, 0, INF], [0, 0, 0.0]]))
    diagonal = alignment_mask(4)
    assert diagonal.shape == (4, 4)
    assert torch.equal(diagonal == 0, torch.eye(4, dtype=torch.bool))
    assert torch.isinf(diagonal[~torch.eye(4, dtype=torch.bool)]).all()
    two = alignment_mask(3, 6, audio_frames_per_frame=2)  # frame t sees audio 2t, 2t+1
    assert (two == 0).nonzero().tolist() == [[0, 0], [0, 1], [1, 2], [1, 3], [2, 4], [2, 5]]
    short = alignment_mask(4, 3)  # audio ends early: the last frames see the last audio frame
    assert (short == 0).nonzero().tolist() == [[0, 0], [1, 1], [2, 2], [3, 2]]


def test_expand_for_heads_is_batch_major_and_masks_padded_keys():
    per_head = torch.stack([torch.zeros(3, 3), torch.ones(3, 3)])  # head 1 is all ones
    key_valid = torch.tensor([[True, True, True], [True, True, False]])
    full = expand_for_heads(per_head, 2, 2, key_valid)
    assert full.shape == (4, 3, 3)
    assert torch.equal(full[0], torch.zeros(3, 3)) and torch.equal(full[1], torch.ones(3, 3))
    assert torch.isinf(full[2:, :, 2]).all() and torch.isfinite(full[2:, :, :2]).all()


def test_periodic_positional_encoding_repeats_every_period():
    encoding = PeriodicPositionalEncoding(7, period=4, dropout=0.0)  # odd width works
    table = encoding.encoding(12)
    assert table.shape == (12, 7)
    assert torch.allclose(table[4:8], table[:4]) and torch.allclose(table[8:], table[:4])
    assert torch.equal(table[0, 0::2], torch.zeros(4)) and torch.equal(table[0, 1::2], torch.ones(3))
    assert table[1, 0].item() == pytest.approx(math.sin(1.0))
    assert torch.allclose(encoding.encoding(3, start=5), table[5:8])
    x = torch.zeros(2, 6, 7)
    assert torch.allclose(encoding(x), table[:6].expand(2, -1, -1))


def test_biased_decoder_is_causal_aligned_and_ignores_trailing_padding():
    torch.manual_seed(0)
    decoder = BiasedCausalDecoder(16, 4, 2, 32, period=3, dropout=0.0).eval()
    tokens, memory = torch.randn(1, 8, 16), torch.randn(1, 8, 16)
    out = decoder(tokens, memory)
    t = 4
    changed_tokens, changed_memory = tokens.clone(), memory.clone()
    changed_tokens[:, t + 1:] += 1.0
    changed_memory[:, t + 1:] += 1.0
    for new_out in (decoder(changed_tokens, memory), decoder(tokens, changed_memory)):
        assert torch.allclose(new_out[:, : t + 1], out[:, : t + 1], atol=1e-6)
        assert not torch.allclose(new_out[:, t + 1:], out[:, t + 1:], atol=1e-4)
    # a frame sees only its own audio frame: changing audio frame 2 changes output 2 only among <= t
    changed_memory = memory.clone()
    changed_memory[:, 2] += 1.0
    delta = (decoder(tokens, changed_memory) - out).abs().amax(dim=-1)[0]
    assert delta[2] > 1e-4 and delta[:2].max() < 1e-6
    # padding at the end, with a mask, leaves the real frames alone
    padded_tokens = torch.cat([tokens[:, :5], torch.randn(1, 3, 16)], dim=1)
    mask = torch.tensor([[True] * 5 + [False] * 3])
    padded = decoder(padded_tokens, memory, frame_mask=mask)
    assert torch.allclose(padded[:, :5], decoder(tokens[:, :5], memory[:, :5]), atol=1e-5)


# ---- quantiser -----------------------------------------------------------------------
def fixed_quantizer(codes, **options) -> VectorQuantizer:
    quantizer = VectorQuantizer(len(codes), len(codes[0]), **options)
    quantizer.codebook.data.copy_(torch.tensor(codes, dtype=torch.float32))
    if quantizer.ema_decay is not None:
        quantizer.code_sum.copy_(quantizer.codebook)
    return quantizer


def test_quantizer_straight_through_gradient_and_values():
    quantizer = fixed_quantizer([[0.0, 0.0], [1.0, 1.0], [-1.0, 2.0]])
    z = torch.tensor([[[0.1, 0.2], [0.9, 1.3]], [[-0.8, 1.7], [5.0, 5.0]]], requires_grad=True)  # [2, 2, 2]
    out = quantizer(z)
    assert out.indices.tolist() == [[0, 1], [2, 1]]
    assert torch.equal(out.quantized, quantizer.codebook[out.indices].detach())
    (out.quantized * torch.arange(8.0).reshape(2, 2, 2)).sum().backward()
    assert torch.equal(z.grad, torch.arange(8.0).reshape(2, 2, 2))  # identity gradient


def test_commitment_and_codebook_losses_by_hand():
    quantizer = fixed_quantizer([[0.0, 0.0], [1.0, 1.0]], beta=0.25)
    z = torch.tensor([[0.1, 0.2], [0.9, 1.3]], requires_grad=True)
    losses = quantizer(z).losses
    squared = (0.01 + 0.04 + 0.01 + 0.09) / 4  # mean over vectors and channels
    assert losses["codebook"].item() == pytest.approx(squared)
    assert losses["commitment"].item() == pytest.approx(0.25 * squared)
    assert losses["total"].item() == pytest.approx(1.25 * squared)
    masked = quantizer(z, mask=torch.tensor([True, False])).losses
    assert masked["commitment"].item() == pytest.approx(0.25 * (0.01 + 0.04) / 2)
    # the commitment loss trains z, the codebook loss trains the codes
    losses["commitment"].backward()
    assert z.grad is not None and quantizer.codebook.grad is None


def test_perplexity_of_uniform_and_single_code_usage():
    torch.manual_seed(0)
    quantizer = VectorQuantizer(8, 4)
    assert quantizer(quantizer.codebook.detach().clone()).perplexity.item() == pytest.approx(8.0, rel=1e-5)
    twice = quantizer.codebook.detach().repeat(2, 1)
    assert quantizer(twice).perplexity.item() == pytest.approx(8.0, rel=1e-5)
    same = quantizer.codebook.detach()[:1].repeat(5, 1)
    assert quantizer(same).perplexity.item() == pytest.approx(1.0)
    # masked vectors do not count
    mixed = torch.cat([same, quantizer.codebook.detach()[1:]])
    mask = torch.tensor([True] * 5 + [False] * 7)
    assert quantizer(mixed, mask).perplexity.item() == pytest.approx(1.0)


def test_dead_code_restart_moves_unused_codes_onto_inputs():
    torch.manual_seed(0)
    quantizer = fixed_quantizer([[0.0, 0.0], [1.0, 1.0], [100.0, 100.0]], dead_code_threshold=0.5, usage_decay=0.5)
    z = torch.cat([torch.randn(16, 2) * 0.1, 1.0 + torch.randn(16, 2) * 0.1])
    quantizer.eval()
    quantizer(z)
    assert quantizer.codebook[2].tolist() == [100.0, 100.0]  # no restarts outside training
    quantizer.train()
    for _ in range(3):  # usage 1.0 -> 0.5 -> 0.25 < 0.5: restarted on the second call
        quantizer(z)
    moved = quantizer.codebook[2]
    assert moved.abs().max() < 5.0
    assert (z - moved).abs().sum(dim=1).min() < 1e-6  # exactly one of the inputs
    assert quantizer.codebook[0].tolist() == [0.0, 0.0]  # used codes stay


def test_ema_update_moves_codes_toward_their_inputs():
    quantizer = fixed_quantizer([[0.0, 0.0], [5.0, 5.0]], ema_decay=0.5)
    assert "codebook" not in dict(quantizer.named_parameters())
    z = torch.full((10, 2), 1.0)
    quantizer.eval()
    quantizer(z)
    assert quantizer.codebook[0].tolist() == [0.0, 0.0]  # eval: no update
    quantizer.train()
    quantizer(z, update=False)
    assert quantizer.codebook[0].tolist() == [0.0, 0.0]
    out = quantizer(z)
    assert out.losses["codebook"].item() == 0.0
    distances = []
    for _ in range(5):
        distances.append((quantizer.codebook[0] - 1.0).norm().item())
        quantizer(z)
    assert distances[0] < math.sqrt(2) and all(b < a for a, b in zip(distances, distances[1:]))
    assert distances[-1] < 0.1
    # an unused code stays, up to the Laplace smoothing of its decaying cluster size
    assert torch.allclose(quantizer.codebook[1], torch.tensor([5.0, 5.0]), atol=0.01)
    # masked inputs do not pull codes: the same update as without them
    twin = fixed_quantizer([[0.0, 0.0], [5.0, 5.0]], ema_decay=0.5)
    real = torch.full((4, 2), 2.0)
    twin(torch.cat([real, torch.full((3, 2), 4.0)]), mask=torch.tensor([True] * 4 + [False] * 3))
    alone = fixed_quantizer([[0.0, 0.0], [5.0, 5.0]], ema_decay=0.5)
    alone(real)
    assert torch.allclose(twin.codebook, alone.codebook)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("rate", [1, 2])
def test_cached_steps_equal_the_whole_decoder(norm_first, rate):
    """BiasedCausalDecoder.step (key/value cache, linear cost) gives frame by frame what
    forward gives for the whole sequence, with 1 or 2 audio frames a mesh frame."""
    from voxmesh.models.layers.attention import BiasedCausalDecoder

    torch.manual_seed(0)
    decoder = BiasedCausalDecoder(16, 4, 2, 32, period=5, norm_first=norm_first).eval()
    tokens, memory = torch.randn(2, 23, 16), torch.randn(2, 23 * rate, 16)
    with torch.no_grad():
        whole = decoder(tokens, memory, audio_frames_per_frame=rate)
        cache = decoder.new_cache()
        steps = torch.cat([decoder.step(tokens[:, t:t + 1], memory, cache, audio_frames_per_frame=rate)
                           for t in range(23)], dim=1)
    assert cache.frames == 23 and cache.keys[0].shape == (2, 4, 23, 4)
    torch.testing.assert_close(steps, whole, atol=2e-6, rtol=1e-5)
