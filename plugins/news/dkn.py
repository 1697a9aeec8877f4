"""DKN (Wang et al., WWW 2018, "DKN: Deep Knowledge-Aware Network for News Recommendation").

Item, the knowledge-aware CNN (KCNN): each title word's embedding w_i and the embedding e_i of the entity linked
at that word (zero where none; MIND's `title_entities`, aligned with the tokens by `items.entities`), the entity
transformed into the word space by g(e) = tanh(M e + b), are stacked as two channels [w_i; g(e_i)] that stay
aligned word by word. For each window size l, filters spanning both channels slide over the title (ReLU);
max-over-time pooling gives one value per filter; the windows' outputs are concatenated. The entity vectors are
the dataset's pretrained TransE vectors (MIND's `entity_embedding.vec`), kept fixed unless `tune_entities`.
User: attention over the clicked items conditioned on the candidate: a network H over [click; candidate] (one
ReLU hidden layer, then a scalar), softmax over the clicks, the weighted sum of the clicks: one user vector
per candidate (a candidate-aware user encoder).
Click: a network G over [user; candidate] (predictor `dkn`), as the paper does.

Sizes: 100-dimensional words and entities (MIND's entity vectors have 100), 100 filters for each window 1-4, so
400-dimensional items like the other built-ins; the paper reports neither G's nor H's sizes (one hidden layer
of 100 each here).

`entities: false` reads words only (the paper's ablation without knowledge; for data without entity links, such
as Goodreads).

Deviations: the paper's optional context embeddings (the mean of an entity's neighbours in the knowledge
graph) are left out, because MIND ships no neighbour lists (the paper's ablation "DKN without context" is this
model). The paper trains with a log loss on single (user, candidate) pairs; ONCE's matching task trains the same
scores with softmax cross-entropy over the impression's click and its negatives, as every other built-in.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from once.api import Dropout, Pairs, RecipeError, masked_softmax, word_embedding
from once_plugins.news.parts import DknItemOptions, DknPredictorOptions, DknUserOptions


class DknItemEncoder(nn.Module):
    independent_items = True  # each item's vector reads its own features alone: the engine may group items by length

    def __init__(self, options: DknItemOptions, context) -> None:
        super().__init__()
        self.field = context.require_text(options.field)
        self.words = word_embedding(context.vocab_size, options.word_dim, context.word_vectors, "model.item.word_dim")
        self.entity_field = context.require_entities(options.field) if options.entities else None
        if self.entity_field is None:
            self.entities = self.transform = None
        else:
            vectors = context.entity_vectors
            if vectors is None:  # no pretrained vectors: entities are learned like words
                self.entities = nn.Embedding(max(context.entities, 1), options.entity_dim, padding_idx=0)
                nn.init.normal_(self.entities.weight, 0, 0.1)
            else:
                self.entities = nn.Embedding.from_pretrained(vectors.float(), freeze=not options.tune_entities)
            self.transform = nn.Linear(self.entities.embedding_dim, options.word_dim)
        channels = 2 if self.entity_field else 1
        self.convolutions = nn.ModuleList(
            nn.Conv1d(channels * options.word_dim, options.filters, w) for w in options.windows
        )
        self.windows = options.windows
        self.dropout = Dropout(options.dropout)
        self.dim = options.filters * len(options.windows)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        # tokens, entities: (items, length), entities possibly trimmed narrower -> (items, filters * windows)
        tokens = features[self.field]
        channels = [self.words(tokens)]
        if self.entity_field is not None:
            entities = features[self.entity_field]
            entities = F.pad(entities, (0, tokens.shape[1] - entities.shape[1]))
            linked = (entities != 0).unsqueeze(-1)
            channels.append(torch.where(linked, torch.tanh(self.transform(self.entities(entities))), 0.0))
        channels = torch.cat(channels, -1) * (tokens != 0).unsqueeze(-1)
        channels = channels.transpose(1, 2)  # (items, 2 * word_dim, length); padding is exact zeros
        starts = tokens != 0  # a window starting on a word; past the title's end it reads zeros, as at its border
        pooled = []
        for window, convolution in zip(self.windows, self.convolutions, strict=True):
            maps = torch.relu(convolution(F.pad(channels, (0, window - 1))))  # (items, filters, length)
            maps = maps.masked_fill(~starts.unsqueeze(1), 0.0)  # ReLU outputs are >= 0: 0 never wins
            pooled.append(maps.max(-1).values)
        return self.dropout(torch.cat(pooled, -1))


class DknUserEncoder(nn.Module):
    candidate_aware = True  # one user vector per candidate

    def __init__(self, options: DknUserOptions, context) -> None:
        super().__init__()
        dim = context.item_dim
        self.attention = nn.Sequential(
            nn.Linear(2 * dim, options.attention_dim), nn.ReLU(), nn.Linear(options.attention_dim, 1)
        )
        self.dim = dim

    def forward(
        self, history: torch.Tensor, mask: torch.Tensor, users: torch.Tensor, candidates: torch.Tensor
    ) -> torch.Tensor:
        # history: (batch, length, dim), mask: (batch, length), candidates: (batch, C, dim) -> (batch, C, dim)
        batch, length, dim = history.shape
        count = candidates.shape[1]
        pairs = torch.cat(
            [history.unsqueeze(1).expand(-1, count, -1, -1), candidates.unsqueeze(2).expand(-1, -1, length, -1)], -1
        )  # (batch, C, length, 2 * dim)
        weights = masked_softmax(self.attention(pairs).squeeze(-1), mask.unsqueeze(1))  # (batch, C, length)
        return weights @ history  # an empty history: zeros


class DknPredictor(nn.Module):
    def __init__(self, options: DknPredictorOptions, context) -> None:
        super().__init__()
        if context.user_vectors > 1:
            raise RecipeError(
                "the dkn predictor scores one user vector per candidate; this user encoder gives several per user",
                where="model.predictor",
                hint="Use model.predictor: {name: miner} with a multi-interest user encoder.",
            )
        layers: list[nn.Module] = []
        size = context.user_dim + context.item_dim
        for hidden in options.hidden:
            layers += [nn.Linear(size, hidden), nn.ReLU()]
            size = hidden
        self.network = nn.Sequential(*layers, nn.Linear(size, 1))

    def forward(self, users: torch.Tensor, candidates: torch.Tensor, pairs: Pairs) -> torch.Tensor:
        # users: (batch, dim) or (batch, C, dim) from a candidate-aware encoder; candidates (batch, C, dim)
        if users.dim() == 2:
            users = users.unsqueeze(1).expand(-1, candidates.shape[1], -1)
        return self.network(torch.cat([users, candidates], -1)).squeeze(-1)
