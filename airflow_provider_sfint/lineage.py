"""OpenLineage for the operators: what moved from where to where, with schemas from describe.

Operators record, while they run and without extra API calls, the Salesforce object and fields they read
or wrote and the files on the other side; ``get_openlineage_facets_on_complete`` turns that into an
``OperatorLineage`` when the OpenLineage provider is installed and returns None otherwise (the imports are
guarded, so the provider works without it).

Naming follows the OpenLineage conventions: a Salesforce object is namespace ``salesforce://<instance
host>``, name ``<Object>``; a file is namespace ``file`` (name: its absolute path) or ``<scheme>://<bucket>``
(name: the key).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class DatasetRef:
    namespace: str
    name: str
    fields: tuple[tuple[str, str], ...] = ()  # (name, type)
    describe_later: bool = False  # type the fields from describe only when lineage is asked for


def salesforce_dataset(
    instance_url: str, obj: str, fields: Iterable[tuple[str, str]] = (), *, describe_later: bool = False
) -> DatasetRef:
    """``describe_later``: the fields' types are unknown yet; they are read from describe when (and only
    when) an OpenLineage listener asks, so a run without lineage makes no extra API call."""
    host = urlsplit(instance_url).netloc or instance_url
    return DatasetRef(f"salesforce://{host}", obj, tuple(fields), describe_later)


def file_dataset(path: Any, fields: Iterable[tuple[str, str]] = ()) -> DatasetRef:
    """A dataset for a local path, URL or ObjectStoragePath."""
    uri = str(path)
    parts = urlsplit(uri)
    if parts.scheme in ("", "file", "local"):
        return DatasetRef("file", parts.path or uri, tuple(fields))
    return DatasetRef(f"{parts.scheme}://{parts.netloc}", parts.path.lstrip("/"), tuple(fields))


def describe_types(describe: dict[str, Any], names: Iterable[str]) -> list[tuple[str, str]]:
    """(name, Salesforce type) for ``names``, in their order; names describe does not know keep type ''."""
    by_name = {str(f.get("name", "")).lower(): f for f in describe.get("fields", [])}
    out = []
    for name in names:
        found = by_name.get(name.lower())
        out.append((str(found["name"]) if found else name, str(found.get("type", "")) if found else ""))
    return out


def to_operator_lineage(inputs: list[DatasetRef], outputs: list[DatasetRef]) -> Any:
    """An ``OperatorLineage`` (None when the OpenLineage provider is not installed)."""
    try:
        from airflow.providers.common.compat.openlineage.facet import (
            Dataset,
            SchemaDatasetFacet,
            SchemaDatasetFacetFields,
        )
        from airflow.providers.openlineage.extractors import OperatorLineage
    except ImportError:
        return None

    def dataset(ref: DatasetRef) -> Any:
        facets: dict[str, Any] = {}
        if ref.fields:
            facets["schema"] = SchemaDatasetFacet(
                fields=[SchemaDatasetFacetFields(name=n, type=t or None) for n, t in ref.fields]
            )
        return Dataset(namespace=ref.namespace, name=ref.name, facets=facets)

    return OperatorLineage(inputs=[dataset(r) for r in inputs], outputs=[dataset(r) for r in outputs])


@dataclass
class LineageRecord:
    inputs: list[DatasetRef] = field(default_factory=list)
    outputs: list[DatasetRef] = field(default_factory=list)


class LineageMixin:
    """``get_openlineage_facets_on_complete`` from what the operator recorded in ``_sfint_lineage``."""

    _sfint_lineage: LineageRecord | None = None

    def _record_lineage(self, inputs: list[DatasetRef], outputs: list[DatasetRef]) -> None:
        self._sfint_lineage = LineageRecord(inputs, outputs)

    def _record_rows_lineage(self, source: Any, instance_url: str, obj: str, rows: list[dict[str, Any]]) -> None:
        """Rows written to ``obj``: the source file (when they came from one) in, the object out, typed
        from describe only if lineage is asked for."""
        from airflow.providers.common.compat.sdk import ObjectStoragePath

        names = [(n, "") for n in dict.fromkeys(k for row in rows for k in row)]
        inputs = [file_dataset(source, names)] if isinstance(source, str | ObjectStoragePath) else []
        self._record_lineage(inputs, [salesforce_dataset(instance_url, obj, names, describe_later=True)])

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        if self._sfint_lineage is None:
            return None
        return to_operator_lineage(
            [self._typed(r) for r in self._sfint_lineage.inputs], [self._typed(r) for r in self._sfint_lineage.outputs]
        )

    def _typed(self, ref: DatasetRef) -> DatasetRef:
        if not ref.describe_later:
            return ref
        try:
            describe = self.hook.client.describe(ref.name)  # type: ignore[attr-defined]
        except Exception:  # lineage must never fail a task that succeeded; keep the names untyped
            return DatasetRef(ref.namespace, ref.name, ref.fields)
        return DatasetRef(ref.namespace, ref.name, tuple(describe_types(describe, [n for n, _ in ref.fields])))
