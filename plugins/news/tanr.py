"""TANR (Wu et al., ACL 2019): topic-aware news representations.

Item: title word embeddings -> dropout -> CNN (ReLU) -> dropout -> additive attention, as NAML's title view; a
topic classifier (softmax over the item's category) on the item vector is trained jointly, its cross-entropy
added to the click loss with weight `topic_weight` (the paper's lambda = 0.2), so that the vector carries the
item's topic. Items whose category is unknown (index 0) are left out of that loss.
User: additive attention over the clicked items' vectors (registered as user encoder `tanr`).

Sizes follow the paper: 300-d words, 400 filters of window 3, attention query 200, dropout 0.2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from once.api import ConvTextEncoder, Dropout, RecipeError, word_embedding
from once_plugins.news.parts import TanrItemOptions


class TanrItemEncoder(nn.Module):
    def __init__(self, options: TanrItemOptions, context) -> None:
        super().__init__()
        self.field = context.require_text(options.field)
        topics = context.category_sizes.get(options.topic, 0)
        if options.topic_weight and topics < 2:
            raise RecipeError(
                f"TANR predicts the item's '{options.topic}', which is not a category field of this data",
                where="model.item.topic",
                hint=f"Category fields (recipe items.categories): {', '.join(context.category_sizes) or 'none'}; "
                "without categories, set model.item.topic_weight: 0 (TANR's encoder without its topic loss).",
            )
        self.topic = options.topic
        self.weight = options.topic_weight
        vectors = context.word_vectors
        self.embedding = word_embedding(context.vocab_size, options.word_dim, vectors, "model.item.word_dim")
        self.dropout = Dropout(options.dropout)
        self.text = ConvTextEncoder(
            options.word_dim, options.filters, options.window, options.query_dim, options.dropout
        )
        self.classifier = nn.Linear(options.filters, topics) if options.topic_weight else None
        # the topic loss is a mean over one call's items: those must all come in one call
        self.independent_items = self.classifier is None
        self.dim = options.filters
        self._terms: dict[str, torch.Tensor] = {}

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        tokens = features[self.field]  # (items, tokens)
        vectors = self.text(self.dropout(self.embedding(tokens)), tokens != 0)  # (items, filters)
        self._terms = {}
        if self.training and self.classifier is not None:
            topics = features[self.topic]  # (items,) category index, 0 = unknown
            logits = self.classifier(vectors).float()
            known = (topics > 0).float()
            # the mean over the items of known topic; a batch without any gives an exact 0 (the same term name
            # on every step and every rank)
            losses = F.cross_entropy(logits, topics, reduction="none") * known
            self._terms = {"topic": self.weight * losses.sum() / known.sum().clamp(min=1)}
        return vectors

    def auxiliary_losses(self) -> dict[str, torch.Tensor]:
        """The weighted topic-classification loss of the last training forward."""
        return self._terms
