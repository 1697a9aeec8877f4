"""DKN: its knowledge-aware CNN reads the aligned entities, its user weighs clicks by the candidate."""

import pytest
import torch

from once.api import BuildContext, Pairs
from once.assembly import load_data
from once.errors import RecipeError
from once.model import build_recommender
from once.recipe import load_recipe


def test_dkn_names_the_entities_the_recipe_does_not_ask_for(registry):
    resolved = load_recipe("demo-dkn", registry, ["items.entities=[]"])
    with pytest.raises(RecipeError, match="which the recipe does not ask for") as error:
        build_recommender(resolved, load_data(resolved))
    assert error.value.where == "items.entities"


def dkn_context(**changes) -> BuildContext:
    tokens = torch.tensor([[0, 0, 0, 0], [5, 9, 3, 0], [7, 1, 0, 0], [4, 4, 8, 2]])
    fields = {"title": tokens, "title_entities": torch.tensor([[0, 0, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]])}
    return BuildContext(
        vocab_size=12,
        special_ids=(0, 1),
        word_vectors=None,
        text_lengths={"title": 4},
        category_sizes={},
        num_users=1,
        item_features=fields,
        item_clicks=torch.zeros(4),
        tokenizer={},
        entities=3,
        entity_vectors=torch.tensor([[0.0, 0.0], [1.0, 2.0], [-1.0, 0.5]]),
        **changes,
    )


def test_dkn_reads_entities_aligned_and_ignores_padding(registry):
    part = registry.get("item_encoder", "dkn")
    torch.manual_seed(0)
    context = dkn_context()
    encoder = part.load()(part.options(word_dim=8, filters=4, windows=[1, 2, 3]), context).eval()
    features = dict(context.item_features)
    vectors = encoder(features)
    assert vectors.shape == (4, 12) and encoder.dim == 12
    assert not encoder.entities.weight.requires_grad  # pretrained vectors stay fixed unless tune_entities
    trimmed = {**features, "title_entities": features["title_entities"][:, :2]}  # the engine trims each feature
    padded = {k: torch.nn.functional.pad(v, (0, 3)) for k, v in features.items()}
    torch.testing.assert_close(encoder(trimmed), vectors)
    torch.testing.assert_close(encoder(padded), vectors)
    moved = {**features, "title_entities": torch.roll(features["title_entities"], 1, dims=1)}
    changed = (encoder(moved) - vectors).abs().sum(-1)
    assert changed[1] > 0 and changed[2] > 0 and changed[3] == 0  # the entity's position matters; none: none


def test_the_dkn_user_weighs_clicks_by_the_candidate_and_the_predictor_scores_pairs(registry):
    context = dkn_context(item_dim=6, user_dim=6, candidate_aware_users=True)
    user_part, predictor_part = registry.get("user_encoder", "dkn"), registry.get("predictor", "dkn")
    torch.manual_seed(0)
    user = user_part.load()(user_part.options(attention_dim=5), context).eval()
    predictor = predictor_part.load()(predictor_part.options(hidden=[7]), context).eval()
    history, candidates = torch.randn(2, 3, 6), torch.randn(2, 4, 6)
    mask = torch.tensor([[True, True, False], [False, False, False]])
    users = user(history, mask, torch.zeros(2, dtype=torch.long), candidates)
    assert users.shape == (2, 4, 6) and users[1].abs().sum() == 0  # an empty history gives zeros
    assert not torch.allclose(users[0, 0], users[0, 1])  # another candidate, another user vector
    pairs = Pairs(
        torch.zeros(2, dtype=torch.long), torch.ones(2, 4, dtype=torch.long), torch.ones(2, 3, dtype=torch.long)
    )
    scores = predictor(users, candidates, pairs)
    assert scores.shape == (2, 4)
    single = predictor(users[:, 0], candidates, pairs)  # one vector per user is broadcast over the candidates
    torch.testing.assert_close(single[:, 0], scores[:, 0])
    with pytest.raises(RecipeError, match="several per user"):
        predictor_part.load()(predictor_part.options(), dkn_context(item_dim=6, user_dim=6, user_vectors=4))


def test_the_mind_recipe_trains_on_linked_entities_and_their_vectors(tmp_path, registry):
    """mind-dkn end to end on a MIND folder in the official schema: entity columns and entity_embedding.vec."""
    from test_entities import write

    from once.checkpoint import load_model
    from once.train import train

    root = write(tmp_path / "mind", {"Q1": [0.5, -1.0, 0.25], "Q3": [2.0, 0.25, -0.5]})
    sizes = ["model.item.filters=4", "model.item.word_dim=8"]
    overrides = [f"dataset.path={root}", "device=cpu", "train.epochs=1", *sizes]
    resolved = load_recipe("mind-dkn", registry, overrides)
    result = train(resolved, runs_root=tmp_path / "runs")
    assert result.epochs[0]["train_loss"] > 0
    data = load_data(resolved)
    model = build_recommender(resolved, data)
    load_model(result.run.path / "best.safetensors", model)
    entities = model.item_encoder.entities.weight  # none, Q1-Q4 (linked in training items), Q9
    assert entities.shape == (6, 3)
    torch.testing.assert_close(entities[[1, 3]], torch.tensor([[0.5, -1.0, 0.25], [2.0, 0.25, -0.5]]))  # frozen
