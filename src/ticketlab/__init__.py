"""ticketlab: lottery-ticket research with PyTorch."""

__version__ = "0.1.0"
