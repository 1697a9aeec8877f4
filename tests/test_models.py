import torch
import torch.nn.functional as F
from once_plugins.nrms import NrmsItemEncoder, NrmsItemOptions, NrmsUserEncoder, NrmsUserOptions

from once.model import BuildContext
from once.nn import masked_softmax

CONTEXT = BuildContext(
    vocab_size=50, word_vectors=None, text_lengths={"title": 6}, category_sizes={}, num_users=3, item_dim=32
)


def test_masked_softmax_zeroes_masked_positions_and_empty_rows():
    scores = torch.tensor([[1e4, 2.0, -1e4], [3.0, 3.0, 3.0]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    weights = masked_softmax(scores, mask)
    assert torch.isfinite(weights).all()
    assert weights[0].tolist() == [1.0, 0.0, 0.0]  # stable with huge scores: no overflow
    assert weights[1].tolist() == [0.0, 0.0, 0.0]


def test_nrms_item_encoder_ignores_padding_tokens():
    torch.manual_seed(0)
    encoder = NrmsItemEncoder(NrmsItemOptions(word_dim=16, heads=4, head_dim=8, query_dim=8), CONTEXT).eval()
    tokens = torch.tensor([[5, 9, 3, 0], [7, 0, 0, 0]])
    padded_more = F.pad(tokens, (0, 5))
    short, long = encoder({"title": tokens}), encoder({"title": padded_more})
    assert short.shape == (2, 32)
    torch.testing.assert_close(short, long, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(short[0], encoder({"title": torch.tensor([[5, 9, 4, 0]])})[0])  # content matters


def test_nrms_user_encoder_ignores_padded_history_and_handles_empty_history():
    torch.manual_seed(0)
    encoder = NrmsUserEncoder(NrmsUserOptions(heads=4, head_dim=8, query_dim=8), CONTEXT).eval()
    history = torch.randn(2, 3, 32)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    garbage = torch.randn(2, 4, 32) * 100  # what sits in padded positions must not matter
    longer = torch.cat([history, garbage], dim=1)
    longer_mask = F.pad(mask, (0, 4))
    users = torch.tensor([1, 2])
    torch.testing.assert_close(encoder(history, mask, users), encoder(longer, longer_mask, users), rtol=1e-5, atol=1e-6)
    empty = encoder(garbage, torch.zeros(2, 4, dtype=torch.bool), users)
    assert torch.isfinite(empty).all()
