"""factory_boy factories shared by the suite."""

import factory

from healing.models import Project, ProjectKey, hash_secret


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project

    slug = factory.Sequence(lambda n: f"project-{n}")
    name = factory.Sequence(lambda n: f"Project {n}")
    allowed_origins = factory.LazyFunction(lambda: ["https://app.example.com"])
    rate_limit_per_minute = 10_000


class ProjectKeyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ProjectKey

    project = factory.SubFactory(ProjectFactory)
    secret_hash = factory.LazyFunction(lambda: hash_secret("secret"))


from django.utils import timezone  # noqa: E402

from healing.models import Issue, IssueEvent, Occurrence, issue_id_for  # noqa: E402


class IssueFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Issue

    project = factory.SubFactory(ProjectFactory)
    fingerprint = factory.Sequence(lambda n: f"{n:064x}")
    id = factory.LazyAttribute(lambda o: issue_id_for(project_id=o.project.id, fingerprint=o.fingerprint))
    grouping = factory.LazyAttribute(lambda o: f"message | {o.type} | {o.title}")
    type = "ERROR"
    severity = "P2"
    base_severity = factory.SelfAttribute("severity")
    title = factory.Sequence(lambda n: f"Problem {n}")
    first_seen = factory.LazyFunction(timezone.now)
    last_seen = factory.SelfAttribute("first_seen")
    occurrence_count = 1
    affected_users = 1


class OccurrenceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Occurrence

    event_id = factory.Faker("uuid4", cast_to=None)
    issue = factory.SubFactory(IssueFactory)
    project = factory.SelfAttribute("issue.project")
    source = "native"
    received_at = factory.LazyFunction(timezone.now)
    message = factory.SelfAttribute("issue.title")
    payload = factory.LazyAttribute(lambda o: {"event_id": str(o.event_id), "message": o.message})


class IssueEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = IssueEvent

    issue = factory.SubFactory(IssueFactory)
    stage = "detected"
    message = "We noticed the problem."
