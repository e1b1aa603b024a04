"""Networks of the lottery papers and their initialisation schemes."""

from ticketlab.models.init import INIT_STDS, draw_weight, fans, glorot_std, initialise
from ticketlab.models.networks import MODELS, Network, build_model
from ticketlab.models.weights import load_weights

__all__ = ["INIT_STDS", "MODELS", "Network", "build_model", "draw_weight", "fans", "glorot_std", "initialise", "load_weights"]
