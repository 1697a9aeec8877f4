"""Every built-in encoder: padding never changes the output, an empty history gives a finite user vector."""

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from once.api import BuildContext, Pairs, RecipeError
from once.nn import Dropout, MultiHeadSelfAttention, WordEmbedding, convolve_words, masked_softmax
from once.registry import load_registry

REGISTRY = load_registry()
LANGUAGE_MODELS = {"bert", "llama"}  # need a checkpoint on disk: tested in test_dire.py
ITEM_ENCODERS = sorted(p.name for p in REGISTRY.parts() if p.kind == "item_encoder" and p.name not in LANGUAGE_MODELS)
USER_ENCODERS = sorted(p.name for p in REGISTRY.parts() if p.kind == "user_encoder")
ITEMS = 6
generator = torch.Generator().manual_seed(0)
TITLES = torch.tensor(
    [[0, 0, 0, 0], [5, 9, 3, 0], [7, 1, 0, 0], [4, 4, 8, 2], [6, 3, 0, 0], [2, 11, 1, 0]]
)  # 1: unknown
ABSTRACTS = torch.tensor([[0, 0, 0], [12, 13, 14], [0, 0, 0], [15, 0, 0], [16, 17, 0], [0, 0, 0]])
TITLE_ENTITIES = torch.tensor([[0, 0, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [2, 2, 0, 0], [0, 0, 1, 0]])
FEATURES = {
    "item": torch.arange(ITEMS),
    "title": TITLES,
    "title_entities": TITLE_ENTITIES,
    "abstract": ABSTRACTS,
    "category": torch.tensor([0, 1, 2, 1, 3, 2]),
    "subcategory": torch.tensor([0, 1, 2, 3, 4, 0]),
    "contrastive": torch.randn(ITEMS, 8, generator=generator) * torch.tensor([0.0, 1, 1, 1, 1, 1])[:, None],
}
CONTEXT = BuildContext(
    vocab_size=20,
    special_ids=(0, 1),
    word_vectors=None,
    text_lengths={"title": 4, "abstract": 3},
    category_sizes={"category": 4, "subcategory": 5},
    num_users=3,
    item_features={"title": TITLES, "abstract": ABSTRACTS, "title_entities": TITLE_ENTITIES},
    entities=3,
    entity_vectors=torch.tensor([[0.0, 0.0, 0.0], [1.0, 2.0, -1.0], [-1.0, 0.5, 0.0]]),
    item_clicks=torch.tensor([0.0, 3, 1, 0, 7, 2]),
    tokenizer={},
    item_dim=32,
    vector_dims={"contrastive": 8},
)


def build(kind: str, name: str, context: BuildContext = CONTEXT, **options):
    part = REGISTRY.get(kind, name)
    torch.manual_seed(0)
    return part.load()(part.options(**options), context).eval()


def test_masked_softmax_zeroes_masked_positions_and_empty_rows():
    scores = torch.tensor([[1e4, 2.0, -1e4], [3.0, 3.0, 3.0]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    weights = masked_softmax(scores, mask)
    assert weights[0].tolist() == [1.0, 0.0, 0.0]  # stable with huge scores: no overflow
    assert weights[1].tolist() == [0.0, 0.0, 0.0]


def test_dropout_zeroes_a_share_p_and_scales_the_rest():
    dropout = Dropout(0.2)
    x = torch.full((400, 500), 2.0, requires_grad=True)
    torch.manual_seed(0)
    y = dropout(x)
    kept = y != 0
    assert abs(1 - kept.float().mean().item() - 0.2) < 0.005  # 200,000 draws: 4 standard deviations
    assert torch.equal(y[kept], torch.full_like(y[kept], 2.0 / 0.8))
    (gradient,) = torch.autograd.grad(y.sum(), x)
    assert torch.equal(gradient, kept / 0.8)
    assert dropout.eval()(x) is x and Dropout(0.0).train()(x) is x
    assert dropout.train()(x.detach().bfloat16()).dtype == torch.bfloat16  # bf16 autocast's activations stay bf16


def test_dropout_masks_follow_torchs_generator():
    """The masks are drawn from numpy's PCG64 seeded by torch's generator: a seed, or a saved RNG state, repeats them
    (what resumed runs rely on), and each call draws a new one."""
    dropout = Dropout(0.5)
    x = torch.ones(64, 33)
    torch.manual_seed(7)
    first, second = dropout(x), dropout(x)
    state = torch.get_rng_state()
    third = dropout(x)
    assert not torch.equal(first, second) and not torch.equal(second, third)
    torch.manual_seed(7)
    assert torch.equal(dropout(x), first) and torch.equal(dropout(x), second)
    torch.set_rng_state(state)
    assert torch.equal(dropout(x), third)
    kept = torch.stack([dropout(x) != 0 for _ in range(200)]).float()
    assert abs(kept.mean().item() - 0.5) < 0.005  # 422,400 draws: 6 standard deviations
    assert kept.mean(0).std().item() < 0.05  # every position as likely (binomial 200 draws: 0.035)


@pytest.mark.parametrize("window", [1, 3, 5])
def test_convolving_words_as_one_matrix_product_is_nn_conv1d(window):
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(6, 4, window, padding=window // 2)
    words = torch.randn(3, 7, 6, requires_grad=True)
    reference = conv(words.transpose(1, 2)).transpose(1, 2)
    ours = convolve_words(conv, words)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)
    grad = torch.randn_like(ours)
    expected = torch.autograd.grad(reference, (words, conv.weight, conv.bias), grad)
    for a, b in zip(torch.autograd.grad(ours, (words, conv.weight, conv.bias), grad), expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert convolve_words(conv, torch.zeros(0, 7, 6)).shape == (0, 7, 4)  # an empty batch, as nn.Conv1d takes


def test_word_lookups_with_sparse_gradients_give_the_dense_gradient():
    """Lookups smaller than the vocabulary take sparse gradients; the weight's gradient is the dense one nn.Embedding
    gives, summed over lookups (a large one stays dense), over two backward passes and in a copied module (DDP:
    tests/test_scale.py)."""
    torch.manual_seed(0)
    embedding = WordEmbedding(50, 6, padding_idx=0)
    reference = torch.nn.Embedding(50, 6, padding_idx=0)
    reference.weight.data.copy_(embedding.weight.data)
    lookups = [torch.randint(0, 50, shape) for shape in [(3, 4), (5, 2), (1, 7), (9, 8)]]  # the last 72 >= 50 rows
    lookups[0][:, -1] = 0  # padding in a sparse lookup
    assert [look.numel() < 50 for look in lookups] == [True, True, True, False]
    assert embedding(lookups[0]).grad_fn._saved_sparse and not embedding(lookups[3]).grad_fn._saved_sparse
    assert not embedding.eval()(lookups[0]).grad_fn._saved_sparse  # evaluation keeps dense lookups
    embedding.train()

    def loss(module, lookups=lookups):
        return sum((module(look) * torch.arange(6.0)).tanh().sum() for look in lookups)

    for used in (lookups[:3], lookups):  # sparse lookups alone, then with a dense one; the second backward adds
        loss(embedding, used).backward()  # to the gradient, as gradient accumulation does
        loss(reference, used).backward()
        assert embedding.weight.grad.layout == torch.strided
        torch.testing.assert_close(embedding.weight.grad, reference.weight.grad)
    assert embedding.weight.grad[0].abs().sum() == 0  # padding
    copied = copy.deepcopy(embedding)  # a copied weight has no hook: the first sparse lookup registers one
    copied.weight.grad = reference.weight.grad = None
    loss(copied, lookups[:3]).backward()
    loss(reference, lookups[:3]).backward()
    torch.testing.assert_close(copied.weight.grad, reference.weight.grad)


def test_self_attention_is_the_papers_formula_with_masked_keys():
    """The attention (the products written out on CPU, torch's fused kernel on GPUs) equals softmax(q k^T / sqrt(d)) v
    over the real keys, forward and backward; a row with no real key (an empty title or history) is exactly zero."""
    attention = MultiHeadSelfAttention(12, 3, 4)
    x = torch.randn(7, 5, 12, generator=generator, requires_grad=True)
    mask = torch.arange(5)[None] < torch.tensor([5, 3, 1, 0, 4, 2, 0])[:, None]

    def formula(x):
        def split(t):
            return t.view(7, 5, 3, 4).transpose(1, 2)

        q, k, v = (split(layer(x)) for layer in (attention.query, attention.key, attention.value))
        weights = masked_softmax(q @ k.transpose(-1, -2) / 2.0, mask[:, None, None, :])
        return (weights @ v).transpose(1, 2).reshape(7, 5, 12)

    fused, written = attention(x, mask), formula(x)
    torch.testing.assert_close(fused, written, rtol=1e-5, atol=1e-6)
    assert fused[3].abs().sum() == 0 and fused[6].abs().sum() == 0
    (gradient,) = torch.autograd.grad((fused * torch.arange(12.0)).sum(), x)
    (expected,) = torch.autograd.grad((written * torch.arange(12.0)).sum(), x)
    torch.testing.assert_close(gradient, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ITEM_ENCODERS)
def test_item_encoders_ignore_padding_tokens(name):
    encoder = build("item_encoder", name)
    features = dict(FEATURES)
    if getattr(encoder, "user_conditioned", False):  # NPA reads the user of each item occurrence
        features["user"] = torch.tensor([0, 1, 2, 1, 0, 2])
    padded = {k: F.pad(v, (0, 5)) if v.dim() == 2 and not v.is_floating_point() else v for k, v in features.items()}
    vectors = encoder(features)
    assert vectors.shape == (ITEMS, encoder.dim)
    assert torch.isfinite(vectors).all()
    torch.testing.assert_close(vectors, encoder(padded), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", USER_ENCODERS)
def test_user_encoders_ignore_padded_history_and_handle_an_empty_one(name):
    encoder = build("user_encoder", name)
    history = torch.randn(3, 4, 32, generator=generator)
    mask = torch.tensor([[True, True, True, False], [True, False, False, False], [False, False, False, False]])
    users = torch.tensor([1, 2, 0])
    garbage = torch.randn(3, 5, 32, generator=generator) * 100  # what sits in padded positions must not matter
    aware = getattr(encoder, "candidate_aware", False)  # a candidate-aware encoder also reads 4 candidates
    extra = (torch.randn(3, 4, 32, generator=generator),) if aware else ()
    vectors = encoder(history, mask, users, *extra)
    interests = getattr(encoder, "vectors", 1)  # a multi-interest encoder gives K vectors per user
    expected = (3, 4, encoder.dim) if aware else (3, encoder.dim) if interests == 1 else (3, interests, encoder.dim)
    assert vectors.shape == expected
    assert torch.isfinite(vectors).all()  # row 2 has an empty history
    longer = encoder(torch.cat([history, garbage], 1), F.pad(mask, (0, 5)), users, *extra)
    torch.testing.assert_close(vectors, longer, rtol=1e-5, atol=1e-5)


def test_content_changes_the_item_vector():
    for name in ("nrms", "naml", "lstur"):
        encoder = build("item_encoder", name)
        changed = dict(
            FEATURES, title=TITLES.clone().index_put_((torch.tensor([1]), torch.tensor([0])), torch.tensor(6))
        )
        assert not torch.allclose(encoder(FEATURES)[1], encoder(changed)[1]), name


def test_naml_masks_a_view_that_an_item_lacks():
    encoder = build("item_encoder", "naml", word_dim=8, filters=16, query_dim=8, category_dim=4)
    before = encoder(FEATURES)
    with torch.no_grad():
        encoder.text["abstract"].conv.weight.add_(1.0)  # only items with an abstract may change
    after = encoder(FEATURES)
    has_abstract = (ABSTRACTS != 0).any(-1)
    torch.testing.assert_close(before[~has_abstract], after[~has_abstract])
    assert not torch.allclose(before[has_abstract], after[has_abstract])
    assert before[0].abs().sum() == 0  # the padding item has no view at all


def test_naml_skips_views_the_data_lacks_or_that_never_vary():
    books = dataclasses.replace(CONTEXT, text_lengths={"title": 4}, category_sizes={"category": 2})  # all 'book'
    part = REGISTRY.get("item_encoder", "naml")
    encoder = part.load()(part.options(), books)
    assert encoder.text_views == ["title"] and encoder.category_views == []


@pytest.mark.parametrize("variant", ["ini", "con"])
def test_lstur_user_embedding_is_masked_in_training_and_zero_for_unseen_users(variant):
    encoder = build("user_encoder", "lstur", variant=variant, mask_probability=1.0)
    history = torch.randn(2, 3, 32, generator=generator)
    mask = torch.ones(2, 3, dtype=torch.bool)
    with torch.no_grad():
        encoder.users.weight[1:].normal_()
    assert encoder.users.weight[0].abs().sum() == 0  # index 0, the unseen user, stays zero
    known, unseen = torch.tensor([1, 2]), torch.tensor([0, 0])
    evaluated = encoder(history, mask, known)
    assert not torch.allclose(evaluated, encoder(history, mask, unseen))  # the long-term part counts in eval
    encoder.train()
    torch.testing.assert_close(encoder(history, mask, known), encoder(history, mask, unseen))  # always masked


def test_lstur_con_splits_the_vector_into_short_and_long_term():
    encoder = build("user_encoder", "lstur", variant="con", user_dim=12)
    assert encoder.gru.hidden_size == 20 and encoder.dim == 32


def test_overlap_baseline_sums_the_idf_of_shared_words():
    items, users = build("item_encoder", "overlap"), build("user_encoder", "max")
    vectors = items(FEATURES)
    user = users(vectors[[1, 2]].unsqueeze(0), torch.ones(1, 2, dtype=torch.bool), torch.tensor([1]))
    scores = vectors[[3, 4, 5]] @ user[0]
    df = {w: sum(int(w in row.tolist()) for row in TITLES[1:]) for w in range(1, 20)}
    idf = {w: torch.log(torch.tensor(5.0 / max(df[w], 1))).item() for w in df}
    idf[1] = 0.0  # id 1 is the unknown word: not a word two texts can share
    history_words = {5, 9, 3, 7}
    expected = [sum(idf[w] for w in set(TITLES[i].tolist()) & history_words) for i in (3, 4, 5)]
    torch.testing.assert_close(scores, torch.tensor(expected), rtol=1e-5, atol=1e-6)


def test_popularity_baseline_ranks_by_training_clicks():
    items = build("item_encoder", "popularity")
    users = build("user_encoder", "ones", dataclasses.replace(CONTEXT, item_dim=items.dim))
    vectors = items(FEATURES)
    user = users(vectors.unsqueeze(0), torch.ones(1, ITEMS, dtype=torch.bool), torch.tensor([0]))
    scores = vectors @ user[0]
    assert scores.argsort(descending=True)[:3].tolist() == [4, 1, 5]


@pytest.mark.parametrize("name", ["nrms", "lstur", "overlap"])
def test_encoding_a_field_that_is_not_tokenized_names_the_recipe_key(name):
    from once.errors import RecipeError

    with pytest.raises(RecipeError) as error:
        build("item_encoder", name, field="body")
    assert error.value.where == "model.item.field" and "title, abstract" in error.value.hint


def test_nrms_user_encoder_takes_the_item_size_unless_told():
    wide = dataclasses.replace(CONTEXT, item_dim=96)
    assert build("user_encoder", "nrms", wide, heads=4).dim == 96  # head_dim unset: 96 / 4 heads
    assert build("user_encoder", "nrms", wide, heads=4, head_dim=8).dim == 32
    with pytest.raises(RecipeError, match="96 dimensions, which 5 heads do not divide") as error:
        build("user_encoder", "nrms", wide, heads=5)
    assert error.value.where == "model.user.heads"


def test_unequal_sizes_for_the_dot_predictor_say_which_keys_to_change():
    with pytest.raises(RecipeError, match="the user encoder gives 32-d vectors and the item encoder 64-d") as error:
        build("predictor", "dot", dataclasses.replace(CONTEXT, item_dim=64, user_dim=32))
    assert "options of model.item and model.user" in error.value.hint


@pytest.mark.parametrize("aggregation", ["max", "mean", "weighted"])
def test_the_miner_predictor_combines_k_interests(aggregation):
    context = dataclasses.replace(CONTEXT, item_dim=8, user_dim=8, user_vectors=3)
    predictor = build("predictor", "miner", context, aggregation=aggregation)
    users, candidates = torch.randn(2, 3, 8, generator=generator), torch.randn(2, 5, 8, generator=generator)
    pairs = Pairs(
        torch.zeros(2, dtype=torch.long), torch.ones(2, 5, dtype=torch.long), torch.ones(2, 1, dtype=torch.long)
    )
    scores = predictor(users, candidates, pairs)
    matching = torch.einsum("bcd,bkd->bck", candidates, users)
    expected = {"max": matching.max(-1).values, "mean": matching.mean(-1)}.get(aggregation)
    if expected is not None:
        torch.testing.assert_close(scores, expected)
    else:  # target-aware weights: a convex combination of the K matching scores
        assert ((scores >= matching.min(-1).values - 1e-5) & (scores <= matching.max(-1).values + 1e-5)).all()
    one = predictor(users[:, :1], candidates, pairs)  # a single interest: every aggregation is the dot product
    torch.testing.assert_close(one, matching[..., 0])


def test_the_dot_predictor_refuses_several_vectors_per_user():
    with pytest.raises(RecipeError, match="3 vectors per user and the dot predictor scores one") as error:
        build("predictor", "dot", dataclasses.replace(CONTEXT, user_dim=32, user_vectors=3))
    assert "miner" in error.value.hint


def test_miner_interests_spread_under_the_disagreement_term():
    encoder = build("user_encoder", "miner", interests=4, code_dim=16).train()
    history, mask = torch.randn(2, 6, 32, generator=generator), torch.ones(2, 6, dtype=torch.bool)
    interests = encoder(history, mask, torch.tensor([1, 2]))
    (term,) = encoder.auxiliary_losses().values()
    unit = F.normalize(interests, dim=-1)
    torch.testing.assert_close(term, 0.8 * (unit @ unit.transpose(1, 2)).mean())
    encoder.eval()
    encoder(history, mask, torch.tensor([1, 2]))
    assert encoder.auxiliary_losses() == {}  # only in training


def test_caum_users_depend_on_the_candidate():
    encoder = build("user_encoder", "caum", heads=4)
    history, mask = torch.randn(2, 5, 32, generator=generator), torch.ones(2, 5, dtype=torch.bool)
    candidates = torch.randn(2, 3, 32, generator=generator)
    vectors = encoder(history, mask, torch.tensor([1, 2]), candidates)
    assert not torch.allclose(vectors[:, 0], vectors[:, 1])  # another candidate, another user vector
    alone = encoder(history, mask, torch.tensor([1, 2]), candidates[:, 1:2])  # each candidate on its own
    torch.testing.assert_close(alone[:, 0], vectors[:, 1], rtol=1e-5, atol=1e-6)


def test_npa_reads_an_item_differently_for_each_user():
    encoder = build("item_encoder", "npa")
    with torch.no_grad():
        encoder.query.users.weight.normal_(0, 1)  # trained embeddings differ per user (row 0, unseen, stays 0)
        encoder.query.users.weight[0] = 0
    one = {k: v[[3, 3]] for k, v in FEATURES.items()}  # the same item twice
    vectors = encoder({**one, "user": torch.tensor([1, 2])})
    assert not torch.allclose(vectors[0], vectors[1])
    same = encoder({**one, "user": torch.tensor([2, 2])})
    torch.testing.assert_close(same[0], same[1])


def test_tanr_always_names_its_term_in_training():
    encoder = build("item_encoder", "tanr").train()
    encoder(FEATURES)
    (known,) = encoder.auxiliary_losses().values()
    assert known > 0
    encoder({**FEATURES, "category": torch.zeros(ITEMS, dtype=torch.long)})  # no item of known topic
    assert encoder.auxiliary_losses() == {"topic": torch.tensor(0.0)}  # a zero term, so every rank has it
    encoder.eval()(FEATURES)
    assert encoder.auxiliary_losses() == {}
