"""Launch or resume training on Colab (or any GPU box) with checkpoints mirrored to a Remote.

colab.py (mount, root link, darknet binary), stage.py (dataset onto local disk),
trainers.py (pure command building), weights.py (checkpoint checks),
mirror.py (watch the trainer's output, upload complete checkpoints safely),
runner.py (orchestrates the steps).
"""
