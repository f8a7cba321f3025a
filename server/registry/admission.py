"""Who may contribute: whether a run fits the registry (base, data spec), silo tombstones
(permanent forgetting), the federation's partition, and which increments a silo has
already contributed.

Forgetting a silo removes its components *and* leaves a tombstone: while it stands, every
later contribution of that silo is refused ("forgotten on <date>: <reason>"), so a node
that keeps running cannot quietly put the data back. Only the operator lifts it
(:meth:`AdmissionMixin.readmit`); both are in the audit log. A readmitted silo trains again
from its first increment: what it contributed before it was forgotten no longer counts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import torch

from tmc.common.components import Weighting
from tmc.common.data.inputs import DataSpec
from tmc.common.errors import NotFoundError
from tmc.server.registry.entities import (
    BaseRecord,
    PartitionRecord,
    RegistrySettings,
    SiloTombstone,
    utc_now,
)
from tmc.server.registry.errors import ForgottenSiloError, RegistryMismatchError
from tmc.server.registry.privacy import PrivacyFloor, shortfall
from tmc.server.registry.queries import RegistryReader


class AdmissionMixin(RegistryReader):
    """The admission half of the registry facade (see the module doc)."""

    # -- does a run fit this registry ----------------------------------------------------------

    def _check_matches(
        self,
        base: BaseRecord,
        weighting: Weighting,
        max_norm: float | None,
        data: DataSpec | None = None,
        privacy: PrivacyFloor | None = None,
    ) -> None:
        held = self._settings
        if held.privacy is not None and (looser := shortfall(privacy, held.privacy)):
            raise RegistryMismatchError(
                f"the registry at {self.root} requires {held.privacy.describe()} of every "
                f"component, for good; this run asks for less ({'; '.join(looser)}): run "
                "with DP settings at least as strict, or use another registry folder"
            )
        if not held.base.same_base(base):
            differences = spec_differences(held.base.spec_json, base.spec_json)
            raise RegistryMismatchError(
                f"the registry at {self.root} holds components of base {held.base.sha256}, "
                f"but this run's base is {base.sha256}"
                + (f" (its spec differs: {'; '.join(differences)})" if differences else "")
                + ": run with the registry's settings, or use another registry folder"
            )
        if data is not None and held.data is not None and held.data != data:
            raise RegistryMismatchError(
                f"the registry at {self.root} was created for classes "
                f"{list(held.data.classes)[:20]} and inputs {held.data.input.describe()}; "
                f"this run has classes {list(data.classes)[:20]} and inputs "
                f"{data.input.describe()}: use another registry folder"
            )
        if (held.weighting, held.max_norm) != (weighting, max_norm):
            raise RegistryMismatchError(
                f"the registry at {self.root} was created with weighting={held.weighting}, "
                f"max_norm={held.max_norm}; the caller asks weighting={weighting}, "
                f"max_norm={max_norm}"
            )

    def _complete(
        self, theta0: Mapping[str, torch.Tensor] | None, data: DataSpec | None, actor: str
    ) -> None:
        """Store what a registry made before schema 2 lacks: θ0 and the data spec."""
        missing_theta0 = theta0 is not None and not self._blobs.has_theta0()
        missing_data = data is not None and self._settings.data is None
        if not (missing_theta0 or missing_data):
            return
        with self._writing():
            if missing_theta0 and theta0 is not None:
                self._blobs.write_theta0(theta0)
            settings = self._settings
            if missing_data:
                settings = settings.model_copy(update={"data": data})
            self._update_settings(
                settings,
                actor=actor,
                details={"theta0_stored": missing_theta0, "data_recorded": missing_data},
            )

    # -- tombstones --------------------------------------------------------------------------

    def tombstone(self, silo: str) -> SiloTombstone | None:
        """The silo's tombstone while it stands (None if the silo is admitted)."""
        with self._reading():
            found = self._store.get_tombstone(silo)
        return found if found is not None and found.active else None

    def tombstones(self, *, include_lifted: bool = False) -> list[SiloTombstone]:
        with self._reading():
            found = self._store.list_tombstones()
        return [t for t in found if include_lifted or t.active]

    def check_admitted(self, silo: str) -> None:
        """Raise :class:`ForgottenSiloError` (its message is the refusal) if ``silo`` is
        tombstoned."""
        found = self.tombstone(silo)
        if found is not None:
            raise ForgottenSiloError(found.refusal())

    def _bury(self, silo: str, *, actor: str, reason: str) -> None:
        """Tombstone ``silo`` (inside the caller's write transaction)."""
        previous = self._store.get_tombstone(silo)
        self._store.put_tombstone(
            SiloTombstone(
                silo=silo,
                forgotten_at=utc_now(),
                reason=reason[:2000],
                actor=actor[:256],
                readmitted_at=previous.readmitted_at if previous else None,
                readmit_reason=previous.readmit_reason if previous else "",
                readmit_actor=previous.readmit_actor if previous else None,
            )
        )

    def readmit(self, silo: str, *, actor: str, reason: str = "") -> SiloTombstone:
        """Lift ``silo``'s tombstone (audited): its next contributions are accepted again,
        starting over from its first increment. NotFoundError if it is not tombstoned."""
        with self._writing():
            found = self._store.get_tombstone(silo)
            if found is None or not found.active:
                raise NotFoundError(
                    f"silo {silo!r} is not forgotten, so there is nothing to readmit"
                )
            lifted = found.model_copy(
                update={
                    "active": False,
                    "readmitted_at": utc_now(),
                    "readmit_reason": reason[:2000],
                    "readmit_actor": actor[:256],
                }
            )
            self._store.put_tombstone(lifted)
            self._store.audit(
                actor,
                "readmit",
                silo=silo,
                details={"reason": reason[:2000], "forgotten_at": found.forgotten_at.isoformat()},
            )
        return lifted

    # -- what a silo has contributed ---------------------------------------------------------

    def contributed_increments(self, silo: str) -> dict[int, str | None]:
        """Increment → data fingerprint of what ``silo`` has contributed and must not train
        again: its active components, and those forgotten one by one since it was last
        readmitted (forgetting a component is a request too)."""
        with self._reading():
            records = self._store.list_components(silo=silo, status="all")
            found = self._store.get_tombstone(silo)
        since = found.readmitted_at if found is not None else None
        return {
            r.increment: r.data_fingerprint
            for r in records
            if r.status == "active"
            or (r.forgotten_at is not None and (since is None or r.forgotten_at > since))
        }

    # -- the federation's partition ----------------------------------------------------------

    def check_partition(self, offered: PartitionRecord, *, silo: str, actor: str) -> None:
        """Record ``offered`` as the federation's partition if none is recorded yet; refuse
        it (RegistryMismatchError saying what differs) if another one is."""
        with self._writing():
            current = self._store.get_settings()
            if current is None:  # pragma: no cover - an open registry has settings
                raise RegistryMismatchError("the registry has no settings")
            if current.partition is None:
                self._update_settings(
                    current.model_copy(update={"partition": offered}),
                    actor=actor,
                    details={"partition": offered.model_dump(mode="json"), "first_silo": silo},
                )
                return
        differences = current.partition.differences(offered)
        if differences:
            raise RegistryMismatchError(
                f"silo {silo}'s data were cut differently from this federation's silos "
                f"({'; '.join(differences)}): its samples may overlap theirs; export its "
                "data with the federation's settings, or use another registry"
            )

    def _update_settings(
        self, settings: RegistrySettings, *, actor: str, details: dict[str, object]
    ) -> None:
        """Replace the settings row (inside the caller's write transaction), audited."""
        self._store.put_settings(settings)
        self._store.audit(actor, "settings", details=details)
        self._settings = settings


def spec_differences(ours_json: str, theirs_json: str) -> list[str]:
    """``key: ours vs theirs`` for each (nested, dotted) field in which two base specs'
    canonical JSON differ."""

    def flat(value: object, prefix: str = "") -> dict[str, object]:
        if isinstance(value, dict):
            out: dict[str, object] = {}
            for key, item in value.items():
                out.update(flat(item, f"{prefix}{key}."))
            return out
        return {prefix.rstrip("."): value}

    try:
        ours, theirs = flat(json.loads(ours_json)), flat(json.loads(theirs_json))
    except ValueError:
        return []
    return [
        f"{key}: {ours.get(key)!r} vs {theirs.get(key)!r}"
        for key in sorted(set(ours) | set(theirs))
        if ours.get(key) != theirs.get(key)
    ]
