"""Reads of flag rows (evaluations never come here: they read the snapshot in flags.evaluate)."""

from flags.evaluate import UnknownFlag
from flags.models import Flag


def flag_get(*, project_id: int, key: str) -> Flag:
    flag = Flag.objects.select_related("project").filter(project_id=project_id, key=key).first()
    if flag is None:
        raise UnknownFlag([key])
    return flag
