"""The exact running sum and the versions made from it.

The registry keeps Σ wᵢΔᵢ of the components in the current version as an ``ExactSum``
blob (integer fixed point: addition is associative, removal exact). Each row says whether
its component is in that sum (``in_sum``). A new version therefore costs the components
added or removed since the last one plus one read and one write of the accumulator, never
a pass over the N components already summed; and removing a component gives, bit for bit,
what composing the others from scratch gives.

Everything here runs inside the caller's write transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from tmc.common.components import Component, Delta, ExactSum, Weighting, component_weight
from tmc.common.errors import ComponentError, CompositionError, IntegrityError, NotFoundError
from tmc.common.hashing import tensors_sha256
from tmc.common.receipts import merkle_root
from tmc.server.registry.blobs import BlobStore, sha256_hex
from tmc.server.registry.entities import ComponentRecord, ModelVersion, RegistrySettings, SumPointer
from tmc.server.registry.entities import utc_now as _now
from tmc.server.registry.exporting import composition_bytes
from tmc.server.registry.store import MetadataStore


@dataclass
class Garbage:
    """Blobs a commit made unreferenced: deleted right after it, or by ``recover()``."""

    sums: list[str] = field(default_factory=list)
    components: list[str] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.sums or self.components or self.versions)


class Composer:
    def __init__(self, store: MetadataStore, blobs: BlobStore, settings: RegistrySettings) -> None:
        self.store = store
        self.blobs = blobs
        self.settings = settings

    def read(self, record: ComponentRecord) -> Component:
        return self.blobs.read_component(record.id, record.blob_sha256)

    def weight(self, component: Component, weighting: Weighting | None = None) -> float:
        return component_weight(component, weighting or self.settings.weighting)

    def running_sum(self) -> ExactSum:
        pointer = self.store.get_sum_pointer()
        if pointer is None:
            return ExactSum(self.settings.base.shapes)
        acc = self.blobs.read_sum(pointer.sha256)
        if (acc.count, acc.total_weight) != (pointer.count, pointer.total_weight):
            raise IntegrityError(f"running sum {pointer.sha256[:12]}… disagrees with its pointer")
        return acc

    def check_composable(self, component: Component) -> None:
        """Refuse a component whose weighted Δ the fixed-point sum cannot hold: accepted, it
        would make every later commit fail."""
        try:
            ExactSum(self.settings.base.shapes).add(component.delta, self.weight(component))
        except CompositionError as exc:
            raise ComponentError(
                f"component {component.id[:12]}… cannot be composed exactly: {exc}"
            ) from exc

    def composition_bytes(self, delta: Delta, component_ids: list[str]) -> bytes:
        return composition_bytes(
            delta,
            base_sha256=self.settings.base.sha256,
            weighting=self.settings.weighting,
            component_ids=component_ids,
        )

    def commit(
        self,
        *,
        removed: list[ComponentRecord],
        pending: list[ComponentRecord],
        round: int | None,
        reason: str,
        actor: str,
    ) -> tuple[ModelVersion, Garbage]:
        """The running sum minus ``removed`` plus ``pending``, committed as a new version
        (rows, sum pointer, version, audit). Blob reads: the accumulator, the removed
        components that were in it, and the pending ones."""
        old_pointer = self.store.get_sum_pointer()
        acc = self.running_sum()
        removed_ids = sorted(r.id for r in removed)
        for record in removed:
            if record.in_sum:
                component = self.read(record)
                acc.remove(component.delta, self.weight(component))
        gone = set(removed_ids)
        added = [r for r in pending if r.id not in gone]
        for record in added:
            component = self.read(record)
            acc.add(component.delta, self.weight(component))
        now = _now()
        if removed_ids:
            self.store.mark_forgotten(removed_ids, now)
        self.store.mark_in_sum(r.id for r in added)
        ids = [r.id for r in self.store.list_components(status="active", in_sum=True)]
        if len(ids) != acc.count:
            raise IntegrityError(
                f"the running sum holds {acc.count} components but {len(ids)} rows say they "
                "are in it: run verify"
            )
        delta = acc.mean()
        version_data = self.composition_bytes(delta, ids)
        sum_data = self.blobs.encode_sum(acc)
        version_sha, sum_sha = sha256_hex(version_data), sha256_hex(sum_data)
        fresh = [
            path
            for path in (self.blobs.version_path(version_sha), self.blobs.sum_path(sum_sha))
            if not path.exists()
        ]
        try:
            self.blobs.write_version(version_data)
            self.blobs.write_sum_bytes(sum_data)
            self.store.set_sum_pointer(
                SumPointer(
                    sha256=sum_sha, count=acc.count, total_weight=acc.total_weight, updated_at=now
                )
            )
            purged = self.store.unpurged_versions_containing(removed_ids)
            purged_blobs = [v.blob_sha256 for n in purged if (v := self.store.get_version(n))]
            self.store.mark_purged(purged)
            latest = self.store.latest_version()
            version = ModelVersion(
                number=1 if latest is None else latest.number + 1,
                component_ids=tuple(ids),
                weighting=self.settings.weighting,
                delta_sha256=tensors_sha256(delta),
                blob_sha256=version_sha,
                created_at=now,
                round=round,
                reason=reason,
                actor=actor,
            )
            self.store.insert_version(version)
            self.store.audit(
                actor,
                "version",
                details={
                    "number": version.number,
                    "count": version.count,
                    "round": round,
                    "reason": reason,
                    "added": [r.id for r in added],
                    "removed": removed_ids,
                    "purged_versions": purged,
                },
                hashes={
                    "delta": version.delta_sha256,
                    "blob": version_sha,
                    "sum": sum_sha,
                    # the root a forget receipt's proofs of absence are checked against
                    "merkle_root": merkle_root(version.component_ids),
                },
            )
        except BaseException:
            # The rows roll back with the transaction; so do the files this attempt created.
            for path in fresh:
                path.unlink(missing_ok=True)
            raise
        stale_sum = [old_pointer.sha256] if old_pointer and old_pointer.sha256 != sum_sha else []
        return version, Garbage(sums=stale_sum, components=removed_ids, versions=purged_blobs)

    def collect(self, garbage: Garbage) -> None:
        """Delete what a commit made garbage, re-checking that nothing refers to it (run in
        a write transaction of its own, after the commit)."""
        pointer = self.store.get_sum_pointer()
        for sha in garbage.sums:
            if pointer is None or pointer.sha256 != sha:
                self.blobs.delete_sum(sha)
        for cid in garbage.components:
            record = self.store.get_component(cid)
            if record is None or record.status == "forgotten":
                self.blobs.delete_component(cid)
        live = self.store.referenced_version_blobs()
        for sha in garbage.versions:
            if sha not in live:
                self.blobs.delete_version(sha)

    def composition(
        self, exclude_silos: Iterable[str], weighting: Weighting | None
    ) -> tuple[Delta, list[str]]:
        """Composed Δ and ids of the active components outside ``exclude_silos``. With the
        registry's weighting it starts from the running sum (cost: excluded + pending
        components); another weighting recomposes from scratch."""
        excluded = set(exclude_silos)
        unknown = sorted(s for s in excluded if not self.store.has_silo(s))
        if unknown:
            raise NotFoundError(f"no component of silo(s) {', '.join(unknown)} in the registry")
        active = self.store.list_components(status="active")
        keep = [r for r in active if r.silo not in excluded]
        if weighting is None or weighting == self.settings.weighting:
            acc = self.running_sum()
            for record in active:
                if record.in_sum and record.silo in excluded:
                    component = self.read(record)
                    acc.remove(component.delta, self.weight(component))
                elif not record.in_sum and record.silo not in excluded:
                    component = self.read(record)
                    acc.add(component.delta, self.weight(component))
        else:
            acc = ExactSum(self.settings.base.shapes)
            for record in keep:
                component = self.read(record)
                acc.add(component.delta, self.weight(component, weighting))
        return acc.mean(), [r.id for r in keep]
