"""Networks of the lottery papers and their initialisation schemes."""

from ticketlab.models.init import INIT_STDS, draw_weight, fans, glorot_std, initialise
from ticketlab.models.networks import MODELS, Network, build_model

__all__ = ["INIT_STDS", "MODELS", "Network", "build_model", "draw_weight", "fans", "glorot_std", "initialise"]
