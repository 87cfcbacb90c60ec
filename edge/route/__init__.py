"""Several `edge-qwen serve` replicas behind one address: LiteLLM's proxy as the router.

We do not write a load balancer. `replicas.py` checks each replica (`/health`,
`/v1/models`); `litellm.py` installs the pinned LiteLLM into its own virtual environment
(it would otherwise change packages the server depends on), writes its config (one
public model name, one deployment per replica, retries, cooldown) and runs it in the
foreground. Keys never enter the config file or a command line: they travel in the
router's environment.
"""

from edge.route.litellm import LITELLM_VERSION, RouterPlan, ensure_router, plan_router, run_router
from edge.route.replicas import Replica, check_replicas

__all__ = [
    "LITELLM_VERSION",
    "Replica",
    "RouterPlan",
    "check_replicas",
    "ensure_router",
    "plan_router",
    "run_router",
]
