"""NAML (Wu et al., IJCAI 2019): attentive multi-view learning.

Item: each text view (title, abstract) is word embeddings -> CNN -> additive attention; each category view
(category, subcategory) is an embedding -> dense (ReLU); a view-level additive attention combines the views.
Views the data does not have are left out (as is a category with a single value: every book is a 'book'),
and a view that is empty for an item (a book without abstract) is masked out of that item's view attention.
User: additive attention over the clicked items.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from once.api import AdditiveAttention, ConvTextEncoder, Dropout, RecipeError, word_embedding
from once_plugins.news.parts import NamlItemOptions

log = logging.getLogger(__name__)


class NamlItemEncoder(nn.Module):
    independent_items = True  # each item's vector reads its own features alone: the engine may group items by length

    def __init__(self, options: NamlItemOptions, context) -> None:
        super().__init__()
        self.text_views = [v for v in options.views if v in context.text_lengths]
        # a category with a single value (every book is 'book') says nothing about an item, and the view
        # attention can collapse onto such a constant view, making every item vector the same
        self.category_views = [v for v in options.views if context.category_sizes.get(v, 0) > 2]
        skipped = [v for v in options.views if v not in self.text_views + self.category_views]
        if skipped:
            log.info("NAML: no data for the view(s) %s; using %s", skipped, self.text_views + self.category_views)
        if not self.text_views + self.category_views:
            raise RecipeError(
                f"none of the NAML views {options.views} is in the data",
                where="model.item.views",
                hint=f"Text fields: {list(context.text_lengths)}; category fields: {list(context.category_sizes)}.",
            )
        self.embedding = word_embedding(
            context.vocab_size, options.word_dim, context.word_vectors, "model.item.word_dim"
        )
        self.dropout = Dropout(options.dropout)
        self.text = nn.ModuleDict(
            {
                view: ConvTextEncoder(
                    options.word_dim, options.filters, options.window, options.query_dim, options.dropout
                )
                for view in self.text_views
            }
        )
        self.categories = nn.ModuleDict(
            {
                view: nn.Sequential(
                    nn.Embedding(context.category_sizes[view], options.category_dim, padding_idx=0),
                    nn.Linear(options.category_dim, options.filters),
                    nn.ReLU(),
                )
                for view in self.category_views
            }
        )
        self.view_attention = AdditiveAttention(options.filters, options.query_dim)
        self.dim = options.filters

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        vectors, present = [], []
        for view in self.text_views:
            tokens = features[view]  # (items, length)
            mask = tokens != 0
            vectors.append(self.text[view](self.dropout(self.embedding(tokens)), mask))
            present.append(mask.any(-1))
        for view in self.category_views:
            values = features[view]  # (items,)
            vectors.append(self.categories[view](values))
            present.append(values != 0)
        return self.view_attention(torch.stack(vectors, 1), torch.stack(present, 1))  # (items, filters)
