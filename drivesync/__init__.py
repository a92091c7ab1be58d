"""drivesync: YOLO datasets and checkpoints between a desktop, Google Drive and Colab."""

__version__ = "0.1.0"
