"""Data usage labels of a dataset (Dataset Service, ``/data/foundation/dataset``).

The export gate reads them. Reading is our own GET, because the update needs the ``etag``
response header, which aepp's ``getLabelSchemaTests`` drops (and its ``headLabels``
returns ``{}`` on success). Writing uses aepp's ``createLabels`` (POST, when the dataset
has no labels entity yet) or ``updateLabels`` (PUT with ``If-Match``).
"""

from __future__ import annotations

from cmle.errors import PlatformError
from cmle.platform.aep.client import AEPClient
from cmle.platform.aep.errors import AEPError
from cmle.platform.aep.http import AEPNotFound


class LabelService:
    def __init__(self, client: AEPClient):
        self.c = client

    def _read(self, dataset_id: str) -> tuple[dict | None, str]:
        try:
            resp = self.c.transport.request("GET", self.c.url("dataset", f"/datasets/{dataset_id}/labels"),
                                            safe=True, what=f"read the labels of dataset {dataset_id}")
        except AEPNotFound:
            return None, ""  # no labels entity: no label
        return resp.json(), resp.headers.get("etag", "")

    def get_labels(self, dataset_id: str) -> set[str]:
        """Labels on the dataset and on any of its fields."""
        body, _ = self._read(dataset_id)
        if not body:
            return set()
        labels = {str(x) for x in body.get("labels") or []}
        for opt in body.get("optionalLabels") or []:
            labels |= {str(x) for x in (opt or {}).get("labels") or []}
        return labels

    def set_labels(self, dataset_id: str, labels: set[str]) -> None:
        wanted = sorted(labels)
        for _ in range(5):
            body, etag = self._read(dataset_id)
            if body is None:
                def create():
                    return self.c.datasets.createLabels(dataset_id, {"labels": wanted})

                def find():
                    current, _ = self._read(dataset_id)
                    return current

                _, created = self.c.transport.create_once(what=f"label dataset {dataset_id}", create=create, find=find)
                if created:
                    return
                continue
            if sorted(body.get("labels") or []) == wanted:
                return  # already so (perhaps by a PUT whose answer was lost)
            payload = {"labels": wanted, "optionalLabels": body.get("optionalLabels") or []}
            try:
                self.c.transport.call(lambda: self.c.datasets.updateLabels(dataset_id, payload, ifMatch=etag),
                                      what=f"label dataset {dataset_id}")
                return
            except AEPError as exc:
                if exc.status != 412:  # 412: the labels changed since we read them; read again
                    raise
        raise PlatformError(f"could not set the labels of dataset {dataset_id}: they kept changing under us")
