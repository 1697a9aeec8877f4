"""GENRE: prompting an LLM to enrich items and users (summaries, profiles, generated items), losing nothing."""
