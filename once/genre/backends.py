"""Chat backends for GENRE: an OpenAI-compatible endpoint through the official client, or a local model.

Backends only translate; retrying, rate limits and bookkeeping live in `once.genre.runner`. A backend raises
`Transient` for what is worth asking again (429, 5xx, timeouts, dropped connections) and `Refused` for what is
not (a 400 for this prompt); a rejected API key stops the whole run with a `OnceError`.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from once.errors import OnceError, RecipeError
from once.progress import quiet_transformers
from once.recipe import BackendSection

Messages = list[dict[str, str]]


@dataclass
class Completion:
    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int


class Transient(Exception):
    """Worth asking again, after `retry_after` seconds if the server said so."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Refused(Exception):
    """The endpoint refused this request for good (recorded as failed; the run goes on)."""


class Backend(Protocol):
    name: str

    async def complete(self, messages: Messages) -> Completion: ...

    async def close(self) -> None: ...


def api_key(section: BackendSection) -> str:
    """The key from the key file or the environment variable the recipe names."""
    if section.api_key_file is not None:
        try:
            key = section.api_key_file.read_text(encoding="utf8").strip().splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise RecipeError(
                f"cannot read the API key file: {error.__class__.__name__}", where="genre.backend.api_key_file"
            ) from None
        if not key or not key[0].strip():
            raise RecipeError("the API key file is empty", where="genre.backend.api_key_file")
        return key[0].strip()
    key = os.environ.get(section.api_key_env, "").strip()
    if not key:
        raise RecipeError(
            f"no API key: the environment variable {section.api_key_env} is not set",
            where="genre.backend.api_key_env",
            hint=f"export {section.api_key_env}=..., or name a key file in genre.backend.api_key_file.",
        )
    return key


def retry_after(headers: Any) -> float | None:
    """Seconds from a `Retry-After` (seconds or HTTP date) or `retry-after-ms` header."""
    if headers is None:
        return None
    if value := headers.get("retry-after-ms"):
        try:
            return float(value) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):  # neither seconds nor an HTTP date: use our own backoff
        return None


class OpenAIBackend:
    """The official `openai` client (async), its own retries off: ours honour Retry-After and record every try."""

    name = "openai"

    def __init__(self, section: BackendSection) -> None:
        import openai

        self.section = section
        self.key = api_key(section)
        self.client = openai.AsyncOpenAI(
            api_key=self.key, base_url=section.base_url, max_retries=0, timeout=section.timeout
        )

    async def complete(self, messages: Messages) -> Completion:
        import openai

        try:
            response = await self.client.chat.completions.create(
                model=self.section.model,
                messages=messages,
                max_tokens=self.section.max_tokens,
                temperature=self.section.temperature,
            )
        except (openai.AuthenticationError, openai.PermissionDeniedError) as error:
            raise OnceError(
                f"the endpoint refused the API key (HTTP {error.status_code})",
                where="genre.backend",
                hint="Check the key and base_url; answers recorded so far are kept.",
            ) from None
        except openai.RateLimitError as error:
            raise Transient("rate limited (HTTP 429)", retry_after(error.response.headers)) from None
        except openai.APITimeoutError:
            raise Transient(f"no answer within {self.section.timeout:g} s") from None
        except openai.APIConnectionError as error:
            raise Transient(f"connection failed: {error.__class__.__name__}") from None
        except openai.APIStatusError as error:
            if error.status_code >= 500 or error.status_code in (408, 409):
                raise Transient(f"HTTP {error.status_code}", retry_after(error.response.headers)) from None
            raise Refused(f"HTTP {error.status_code}: {_first_line(error.message)}") from None
        except (openai.APIResponseValidationError, ValueError) as error:  # ValueError: a body that is not JSON
            raise Transient(f"unreadable response: {error.__class__.__name__}") from None
        if not response.choices:
            raise Transient("the response has no choices")
        usage = response.usage
        return Completion(
            text=response.choices[0].message.content or "",
            model=response.model or self.section.model,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
        )

    async def close(self) -> None:
        await self.client.close()


class TransformersBackend:
    """A local causal LM with its chat template, greedy unless temperature > 0; one generation at a time."""

    name = "transformers"

    def __init__(self, section: BackendSection) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if section.path is None or not Path(section.path).is_dir():
            raise RecipeError(
                "the transformers backend needs the folder of a local causal LM checkpoint",
                where="genre.backend.path",
                hint="Set genre.backend.path (and gguf_file for a GGUF model).",
            )
        quiet_transformers()
        folder, gguf = str(section.path), section.gguf_file
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
            self.model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf).eval()
        except (OSError, ValueError) as error:
            raise RecipeError(
                f"not a causal LM checkpoint: {_first_line(str(error))}", where="genre.backend.path"
            ) from None
        self.section = section
        self.lock = asyncio.Lock()

    def _generate(self, messages: Messages) -> Completion:
        import torch

        inputs = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        sample = self.section.temperature > 0
        with torch.no_grad():
            output = self.model.generate(
                **inputs,
                max_new_tokens=self.section.max_tokens,
                do_sample=sample,
                temperature=self.section.temperature if sample else None,
                top_p=None,
                top_k=None,
                pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            )
        prompt = inputs["input_ids"].shape[1]
        answer = output[0, prompt:]
        return Completion(
            text=self.tokenizer.decode(answer, skip_special_tokens=True),
            model=Path(self.section.gguf_file or self.section.path).name,
            prompt_tokens=int(prompt),
            completion_tokens=int(answer.shape[0]),
        )

    async def complete(self, messages: Messages) -> Completion:
        async with self.lock:
            return await asyncio.to_thread(self._generate, messages)

    async def close(self) -> None:
        return None


def make_backend(section: BackendSection) -> Backend:
    return OpenAIBackend(section) if section.name == "openai" else TransformersBackend(section)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""
