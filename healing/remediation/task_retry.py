"""Remediation by running a Celery task again: a job that was dropped is sent once more.

Only tasks on the allow-list can be sent, each to the queues listed for it: a plan (possibly
written by an LLM) must never be able to start arbitrary code. The built-in list holds Kaizen's
own idempotent tasks; the `KAIZEN_REMEDIATION_TASKS` setting adds the owner's
({"task.name": ["queue", …]}).
"""

from django.conf import settings
from kombu.exceptions import OperationalError
from pydantic import Field, JsonValue, model_validator

from healing.models import RiskLevel, Severity
from healing.remediation.base import Action, Outcome, Params, RemediationContext, RemediationError, register
from kaizen_site.celery import task_publish

BUILT_IN_TASKS: dict[str, tuple[str, ...]] = {
    # Re-runs the healing pipeline for an issue; idempotent (see healing.loop.pipeline).
    "healing.tasks.process_issue": tuple(Severity.values),
}


def retryable_tasks() -> dict[str, tuple[str, ...]]:
    extra = settings.KAIZEN_REMEDIATION_TASKS
    return {**BUILT_IN_TASKS, **{name: tuple(queues) for name, queues in extra.items()}}


class TaskParams(Params):
    task: str = Field(min_length=1, max_length=200)
    args: list[JsonValue] = Field(default_factory=list, max_length=20)
    kwargs: dict[str, JsonValue] = Field(default_factory=dict)
    queue: str | None = Field(None, description="Empty: the first queue listed for the task.")

    @model_validator(mode="after")
    def _allowed(self) -> "TaskParams":
        allowed = retryable_tasks()
        if self.task not in allowed:
            raise ValueError(f'task "{self.task}" is not on the allow-list ({", ".join(sorted(allowed))})')
        if self.queue is not None and self.queue not in allowed[self.task]:
            raise ValueError(f'queue "{self.queue}" is not allowed for {self.task} ({", ".join(allowed[self.task])})')
        return self


@register
class CeleryTaskRetry(Action):
    name = "celery_task_retry"
    risk = RiskLevel.MEDIUM
    summary = "Send an allow-listed Celery task again, with the given args, to one of its queues."
    Params = TaskParams
    no_undo = "a task once sent cannot be called back"
    per_user = True  # it redoes one dropped job; whatever dropped it is still there

    def run(self, params: TaskParams, context: RemediationContext) -> Outcome:
        queue = params.queue or retryable_tasks()[params.task][0]
        try:
            # Sent now rather than on commit: the step's outcome has to say whether the broker took it.
            task_id = task_publish(params.task, args=params.args, kwargs=params.kwargs, queue=queue)
        except OperationalError as exc:
            raise RemediationError(f"The broker did not take the task: {exc}") from exc
        return Outcome(
            ok=True,
            detail=f"{params.task} sent to {queue} as {task_id}.",
            result={"task_id": task_id, "task": params.task, "queue": queue},
        )
