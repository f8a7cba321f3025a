"""The component registry: components, versions, exact forgetting and the audit log.

SQLite (WAL) metadata plus content-addressed safetensors blobs; see ``registry.Registry``.
"""

from tmc.server.registry.blobs import BlobStore
from tmc.server.registry.entities import (
    AuditAction,
    AuditEvent,
    BaseRecord,
    ComponentRecord,
    ComponentStatus,
    ForgetResult,
    ModelVersion,
    PartitionRecord,
    RegistrySettings,
    RegistryStatus,
    SiloSummary,
    SiloTombstone,
    StatusFilter,
    StoreKind,
    VerifyReport,
)
from tmc.server.registry.errors import (
    DuplicateContributionError,
    ForgetChangedError,
    ForgottenComponentError,
    ForgottenSiloError,
    MissingBlobError,
    PrivacyFloorError,
    RegistryBusyError,
    RegistryClosedError,
    RegistryExistsError,
    RegistryIncompleteError,
    RegistryLockedError,
    RegistryMismatchError,
    SchemaVersionError,
    StorageError,
)
from tmc.server.registry.exporting import (
    COMPOSITION_KEY,
    AuditFormat,
    composition_bytes,
    read_composition,
)
from tmc.server.registry.memory import MemoryMetadataStore
from tmc.server.registry.model_file import model_bytes, model_metadata
from tmc.server.registry.privacy import RELATIVE_TOLERANCE, PrivacyFloor, privacy_refusal
from tmc.server.registry.registry import Registry
from tmc.server.registry.run_lock import LOCK_FILENAME, RunHolder, run_lock
from tmc.server.registry.sqlite import SQLiteMetadataStore
from tmc.server.registry.store import MetadataStore

__all__ = [
    "COMPOSITION_KEY",
    "LOCK_FILENAME",
    "RELATIVE_TOLERANCE",
    "AuditAction",
    "AuditEvent",
    "AuditFormat",
    "BaseRecord",
    "BlobStore",
    "ComponentRecord",
    "ComponentStatus",
    "DuplicateContributionError",
    "ForgetChangedError",
    "ForgetResult",
    "ForgottenComponentError",
    "ForgottenSiloError",
    "MemoryMetadataStore",
    "MetadataStore",
    "MissingBlobError",
    "ModelVersion",
    "PartitionRecord",
    "PrivacyFloor",
    "PrivacyFloorError",
    "Registry",
    "RegistryBusyError",
    "RegistryClosedError",
    "RegistryExistsError",
    "RegistryIncompleteError",
    "RegistryLockedError",
    "RegistryMismatchError",
    "RegistrySettings",
    "RegistryStatus",
    "RunHolder",
    "SQLiteMetadataStore",
    "SchemaVersionError",
    "SiloSummary",
    "SiloTombstone",
    "StatusFilter",
    "StorageError",
    "StoreKind",
    "VerifyReport",
    "composition_bytes",
    "model_bytes",
    "model_metadata",
    "privacy_refusal",
    "read_composition",
    "run_lock",
]
