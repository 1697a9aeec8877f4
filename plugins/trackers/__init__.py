"""Experiment trackers: TensorBoard, MLflow, Weights & Biases and a JSON-lines file."""
