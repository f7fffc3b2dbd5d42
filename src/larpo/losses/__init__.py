"""Ranking objectives on the implicit reward ``g = beta * log(pi / pi_ref)`` (Jin et al. 2025, Table 1).

Every objective is a pure function ``fn(policy_logps, reference_logps, beta=0.1, mask=None, **options)``
over ``[B, m]`` candidate lists sorted best-first, and is registered in :data:`OBJECTIVES`.
"""

from larpo.losses.baselines import ipo_loss, simpo_loss
from larpo.losses.contrastive import contrastive_loss
from larpo.losses.lambda_weights import delta_ndcg_weights
from larpo.losses.lambdarank import lambdarank_loss
from larpo.losses.listmle import listmle_loss
from larpo.losses.pairwise import pairwise_loss
from larpo.losses.registry import OBJECTIVES, Objective, check_options, get_objective, register_objective
from larpo.losses.rft import rft_loss

register_objective("pairwise", pairwise_loss, kind="ranking", summary="DPO: best vs last candidate")
register_objective("contrastive", contrastive_loss, kind="ranking", summary="InfoNCE: best vs all others")
register_objective(
    "lambdarank", lambdarank_loss, kind="ranking", summary="logistic loss over all ordered pairs"
)
register_objective("listmle", listmle_loss, kind="ranking", summary="Plackett-Luce likelihood of the order")
register_objective(
    "simpo",
    simpo_loss,
    kind="baseline",
    reference_free=True,
    summary="SimPO: reference-free, length-normalised",
)
register_objective("ipo", ipo_loss, kind="baseline", summary="IPO: squared log-ratio margin")
register_objective(
    "rft", rft_loss, kind="control", reference_free=True, summary="control: NLL of the best candidate only"
)

__all__ = [
    "OBJECTIVES",
    "Objective",
    "check_options",
    "contrastive_loss",
    "delta_ndcg_weights",
    "get_objective",
    "ipo_loss",
    "lambdarank_loss",
    "listmle_loss",
    "pairwise_loss",
    "register_objective",
    "rft_loss",
    "simpo_loss",
]
