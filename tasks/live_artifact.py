"""An artifact that a run rewrites in place (the per-epoch table, the learning curve).

Why in place: creating a new version at every epoch gave a 30-epoch run 30 copies of the same table,
each a chip on the flow run's task graph and a row in the key's history. Updated in place, the run
has one artifact per key, the key's history has one version per run, and the UI still shows the
latest epoch (the server's PATCH /artifacts/{id} also updates the key's latest version).
Outside a run (a test calling `task.fn`) it does nothing, like tasks._run.artifact.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from prefect.artifacts import TableArtifact, create_markdown_artifact, create_table_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactUpdate

from tasks._run import in_run

KINDS = {  # kind -> (create it, its data as the API stores it: what those functions send)
    "table": (create_table_artifact, lambda content: json.dumps(TableArtifact._sanitize(content))),
    "markdown": (create_markdown_artifact, lambda content: content),
}


class LiveArtifact:
    """`publish(content)` creates the artifact the first time, then replaces its data (and description)."""

    def __init__(self, kind: str, key: str, description: str = "") -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown artifact kind {kind!r}: use one of {', '.join(KINDS)}")
        self.kind, self.key, self.description = kind, key, description
        self.id: UUID | None = None

    def publish(self, content: Any, description: str | None = None) -> None:
        if not in_run():
            return
        create, data = KINDS[self.kind]
        description = self.description if description is None else description
        if self.id is None:
            self.id = create(content, key=self.key, description=description)
            return
        with get_client(sync_client=True) as client:
            client.update_artifact(self.id, ArtifactUpdate(data=data(content), description=description))
