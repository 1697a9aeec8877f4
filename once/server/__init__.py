"""`once serve`: a trained run behind an HTTP API (FastAPI on uvicorn), with an ANN index and new items."""
