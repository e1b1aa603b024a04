"""Inside the tickets: mask analytics, ticket combination and the Frankenmodel.

`masks` holds pure statistics of masks and weights (IoU, normalised Hamming distance, rank
correlation, density profiles, movement and sign statistics, surviving inputs); `tickets`
reads `RUN[/BRANCH][:LEVEL][@SEED]` references from the store; `compare` computes every
statistic for a list of tickets; `figures` draws them; `polytopes` gives the tropical form and
decision-boundary zonotopes of a one-hidden-layer two-class network (Alfarra et al.).
"""

from ticketlab.analysis.masks import Movement, density_profile, distance_matrix, hamming, iou, movement, rank_correlation, surviving_inputs

__all__ = ["Movement", "density_profile", "distance_matrix", "hamming", "iou", "movement", "rank_correlation", "surviving_inputs"]
