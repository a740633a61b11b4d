"""Bridges to other tools: PyTorch Lightning, TensorBoard, MLflow. Each imports its tool lazily."""
