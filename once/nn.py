"""Neural building blocks shared by the models: numerically stable masked attention and pooling."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from once.errors import RecipeError


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax over positions where `mask` is true; masked positions get exactly 0, an all-masked row all zeros."""
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    # an all-masked row softmaxes to uniform weights; multiplying by the mask makes them zero, which keeps
    # empty histories (and items with no text) finite and exactly zero
    return torch.softmax(scores, dim=dim) * mask


class AdditiveAttention(nn.Module):
    """Pool a sequence into one vector: weights = softmax(q . tanh(W x + b))."""

    def __init__(self, dim: int, query_dim: int = 200) -> None:
        super().__init__()
        self.project = nn.Linear(dim, query_dim)
        self.query = nn.Linear(query_dim, 1, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # x: (..., length, dim), mask: (..., length) -> (..., dim)
        scores = self.query(torch.tanh(self.project(x))).squeeze(-1)
        weights = masked_softmax(scores, mask)
        return torch.einsum("...l,...ld->...d", weights, x)


class MultiHeadSelfAttention(nn.Module):
    """Scaled dot-product self-attention with `heads` heads of `head_dim` each (NRMS: no output projection)."""

    def __init__(self, dim: int, heads: int, head_dim: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.query = nn.Linear(dim, heads * head_dim)
        self.key = nn.Linear(dim, heads * head_dim)
        self.value = nn.Linear(dim, heads * head_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # x: (batch, length, dim), mask: (batch, length) -> (batch, length, heads * head_dim)
        batch, length, _ = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:  # -> (batch, heads, length, head_dim)
            return t.view(batch, length, self.heads, self.head_dim).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        # softmax(q k^T / sqrt(head_dim) + bias) v, the bias being masked_softmax's masked_fill. A row with no real
        # key (an empty title or history) attends to every position, since an all-masked row gives NaN in some CUDA
        # kernels, and is then zeroed, as masked_softmax zeroes it
        real = mask.any(-1)  # (batch,)
        keys = mask | ~real[:, None]
        bias = torch.zeros(batch, 1, 1, length, dtype=q.dtype, device=q.device)
        bias = bias.masked_fill(~keys[:, None, None, :], torch.finfo(q.dtype).min)
        if x.device.type == "cpu":
            # written out: torch's CPU flash kernel loops over blocks sized for long sequences, and at titles' and
            # histories' lengths (12-50) it took 1.0-1.8x this path's time forward and backward
            scores = torch.matmul(q, k.transpose(-1, -2)) * self.head_dim**-0.5 + bias
            out = torch.matmul(torch.softmax(scores, -1), v)
        else:  # the fused kernels (flash, memory-efficient) are the fast ones on GPUs
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (batch, heads, length, head_dim)
        out = torch.where(real[:, None, None, None], out, 0.0)
        return out.transpose(1, 2).reshape(batch, length, self.heads * self.head_dim)


class Dropout(nn.Module):
    """`nn.Dropout`: in training each value is zeroed with probability `p` and the others scaled by 1 / (1 - p);
    in evaluation the identity. Off the CPU it is `F.dropout`. On the CPU the mask is `keep_mask`'s: torch's
    Bernoulli sampler, and even its uniform numbers, draw one Mersenne-Twister number a value on one thread (a
    fifth of an NRMS training step went to `bernoulli_`, then 15% of a MIND-small-sized one to `uniform_`)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if x.device.type != "cpu":  # CUDA's fused dropout kernel is the fast one there
            return F.dropout(x, self.p, True)
        keep, kept = keep_mask(x.shape, self.p)
        return x * keep.to(x.dtype).mul_(1 / kept)  # bf16 stays bf16

    def extra_repr(self) -> str:
        return f"p={self.p}"


def keep_mask(shape: torch.Size, p: float) -> tuple[torch.Tensor, float]:
    """(mask, probability of True): each value True with probability 1 - p, rounded to a multiple of 2^-32.

    The random bits are numpy's PCG64, 32 a value, seeded by one draw from torch's generator: torch.manual_seed
    and a restored RNG state repeat the masks, as they did torch's own. PCG64 gives 64 bits in about a nanosecond;
    the whole dropout, forward and backward, of 1,500 titles x 12 words x 64 dimensions takes 4.9 ms here against
    7.3 ms with `torch.rand_like` (6.2 ms against 3.2 ms forward alone)."""
    count = math.prod(shape)
    seed = int(torch.randint(0, 2**63 - 1, ()))
    bits = torch.from_numpy(np.random.PCG64(seed).random_raw((count + 1) // 2)).view(torch.int32)[:count]
    dropped = round(p * 2**32)
    return (bits >= dropped - 2**31).view(shape), (2**32 - dropped) / 2**32


class WordEmbedding(nn.Embedding):
    """`nn.Embedding` whose lookups on CPU, while training, take a sparse gradient (a row per looked-up token) when
    that is smaller than the dense one (a row per word of the vocabulary), densified once backward has added up
    every lookup of the step: the optimizer, gradient clipping and DDP see the dense gradient they always saw.

    A training step on CPU encodes a batch's items in groups of similar length (`once.model.length_groups`), a
    lookup per group; a dense gradient per lookup zero-filled and added up a vocabulary-sized table per group
    (15,383 x 300 on Goodreads-MIND, about 4 groups a step: NRMS's and NAML's steps take 1.3x less time without).
    Not on a GPU, where a step looks words up once.
    The densifying is a hook on `weight` (`register_post_accumulate_grad_hook`: it runs before DDP's reducer reads
    the gradient), registered by the first sparse lookup, so that a weight loaded or copied later has it too.
    `torch.autograd.grad` of the weight, which accumulates into no `.grad`, returns the sparse sum."""

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        # the compiling check first: under dynamic shapes the size comparison is symbolic (a guard and a graph
        # break where F.embedding gets it); compiled graphs keep dense lookups
        sparse = self.sparse or bool(
            not torch.compiler.is_compiling()
            and self.training
            and torch.is_grad_enabled()
            and self.weight.requires_grad
            and tokens.device.type == "cpu"
            and tokens.numel() < self.num_embeddings
        )
        if sparse and densify_gradient not in (self.weight._post_accumulate_grad_hooks or {}).values():
            self.weight.register_post_accumulate_grad_hook(densify_gradient)
        return F.embedding(
            tokens, self.weight, self.padding_idx, self.max_norm, self.norm_type, self.scale_grad_by_freq, sparse
        )


def densify_gradient(parameter: torch.Tensor) -> None:
    """A parameter's gradient as a dense tensor (backward adds sparse gradients up as sparse ones)."""
    if parameter.grad is not None and parameter.grad.is_sparse:
        parameter.grad = parameter.grad.to_dense()


def word_embedding(vocab_size: int, word_dim: int, vectors: torch.Tensor | None, where: str) -> WordEmbedding:
    """A trainable word embedding (row 0 = padding), initialised from pretrained vectors when the tokenizer has them."""
    if vectors is None:
        embedding = WordEmbedding(vocab_size, word_dim, padding_idx=0)
        with torch.no_grad():  # GloVe-like scale: torch's N(0, 1) makes the first attention logits huge
            embedding.weight.normal_(0, 0.1)
            embedding.weight[0] = 0
        return embedding
    if vectors.shape[1] != word_dim:
        raise RecipeError(
            f"word_dim is {word_dim} but the tokenizer's vectors have {vectors.shape[1]} dimensions",
            where=where,
            hint=f"Set {where}={vectors.shape[1]}.",
        )
    return WordEmbedding.from_pretrained(vectors.float(), freeze=False, padding_idx=0)


def convolve_words(conv: nn.Conv1d, words: torch.Tensor) -> torch.Tensor:
    """`conv` (odd window, 'same' zero padding) over words `(items, length, word_dim)` -> `(items, length, filters)`,
    computed as one matrix product of every position's window with the flattened kernel: the sums `conv` computes,
    and on CPU 25-35% less time than its mkldnn kernel, forward and backward, at NAML's sizes (300-d words, 400
    filters, window 3, 512-1,500 titles of 16 words). The windows are the padded words' shifted slices side by side
    (a concatenation, whose backward is slicing: `Tensor.unfold`'s backward kernel was 6% of a MIND-small-sized
    LSTUR step, and the whole convolution takes 10-20% less time this way there). `conv` holds the parameters
    (their names and initialisation are nn.Conv1d's)."""
    items, length, word_dim = words.shape
    window = conv.kernel_size[0]
    padded = F.pad(words, (0, 0, window // 2, window // 2))
    windows = torch.cat([padded[:, shift : shift + length] for shift in range(window)], dim=-1)
    kernel = conv.weight.transpose(1, 2).reshape(conv.out_channels, window * word_dim)  # the same order as `windows`
    products = torch.addmm(conv.bias, windows.view(items * length, window * word_dim), kernel.t())
    return products.view(items, length, conv.out_channels)


class ConvTextEncoder(nn.Module):
    """NAML/LSTUR text view: embedded words -> CNN (ReLU) -> dropout -> additive attention."""

    def __init__(self, word_dim: int, filters: int, window: int, query_dim: int, dropout: float) -> None:
        super().__init__()
        if window % 2 == 0:
            raise RecipeError(f"the CNN window must be odd so that every word is centred, got {window}")
        self.conv = nn.Conv1d(word_dim, filters, window, padding=window // 2)
        self.dropout = Dropout(dropout)
        self.pool = AdditiveAttention(filters, query_dim)
        self.dim = filters

    def forward(self, words: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # words: (items, length, word_dim), mask: (items, length) -> (items, filters)
        words = words * mask.unsqueeze(-1)  # padding contributes exact zeros, like the sequence border
        features = torch.relu(convolve_words(self.conv, words))  # (items, length, filters)
        return self.pool(self.dropout(features), mask)
