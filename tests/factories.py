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
