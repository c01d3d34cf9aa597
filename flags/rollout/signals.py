"""How a rollout tells healing what became of its Change, without importing healing's loop.

Each signal is sent inside the rollout's own transaction: what a receiver writes (the Change's
status, the issue's severity) commits or rolls back with the rollout's move, and a receiver's
error aborts that move (`send`, not `send_robust`), as a direct call did. healing connects its
receivers in HealingConfig.ready (healing.loop.rollouts).
"""

from django.dispatch import Signal

# The canary starts: kwargs change, actor, why. The Change must move to canary with it.
rollout_started = Signal()

# The rollout reached everyone: kwargs change, actor, why.
rollout_completed = Signal()

# The flag was killed and the rollout ended: kwargs rollout, change, actor, why, now.
rollout_rolled_back = Signal()

# The promotion policy asks how risky a Change's plan is: kwargs plan; each receiver answers
# with a healing.models.RiskLevel (healing's action registry knows each action's risk).
plan_risk_requested = Signal()
