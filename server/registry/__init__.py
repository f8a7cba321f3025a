"""The component registry: components, versions, exact forgetting and the audit log.

SQLite (WAL) metadata plus content-addressed safetensors blobs; see ``registry.Registry``.
"""

from server.registry.blobs import BlobStore
from server.registry.entities import (
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
from server.registry.errors import (
    ForgottenComponentError,
    ForgottenSiloError,
    MissingBlobError,
    PrivacyFloorError,
    RegistryClosedError,
    RegistryExistsError,
    RegistryIncompleteError,
    RegistryLockedError,
    RegistryMismatchError,
    SchemaVersionError,
    StorageError,
)
from server.registry.exporting import (
    COMPOSITION_KEY,
    AuditFormat,
    composition_bytes,
    read_composition,
)
from server.registry.memory import MemoryMetadataStore
from server.registry.model_file import model_bytes, model_metadata
from server.registry.privacy import RELATIVE_TOLERANCE, PrivacyFloor, privacy_refusal
from server.registry.registry import Registry
from server.registry.sqlite import SQLiteMetadataStore
from server.registry.store import MetadataStore

__all__ = [
    "COMPOSITION_KEY",
    "RELATIVE_TOLERANCE",
    "AuditAction",
    "AuditEvent",
    "AuditFormat",
    "BaseRecord",
    "BlobStore",
    "ComponentRecord",
    "ComponentStatus",
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
    "RegistryClosedError",
    "RegistryExistsError",
    "RegistryIncompleteError",
    "RegistryLockedError",
    "RegistryMismatchError",
    "RegistrySettings",
    "RegistryStatus",
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
]
