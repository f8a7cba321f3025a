"""A Merkle tree over a version's component ids, with proofs that an id is *not* in it.

The tree is RFC 9162's (Certificate Transparency v2, section 2.1): leaves hashed as
SHA-256(0x00 ‖ leaf), inner nodes as SHA-256(0x01 ‖ left ‖ right), split at the largest power
of two below the size; the empty tree's root is SHA-256 of nothing. The leaves are the
version's component ids in sorted order, so the tree depends only on the set.

Non-membership of an id r follows from the order: two adjacent leaves L < r < R, each with an
inclusion proof, at positions i and i + 1; or the first leaf alone when r sorts before it, the
last alone when r sorts after it; or an empty tree.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence

from pydantic import Field

from tmc.common.errors import IntegrityError
from tmc.common.schema import StrictModel

EMPTY_ROOT = hashlib.sha256(b"").hexdigest()


def leaf_hash(leaf: str) -> bytes:
    return hashlib.sha256(b"\x00" + leaf.encode()).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (n ≥ 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _root(hashes: Sequence[bytes]) -> bytes:
    if len(hashes) == 1:
        return hashes[0]
    k = _split(len(hashes))
    return _node(_root(hashes[:k]), _root(hashes[k:]))


def _path(index: int, hashes: Sequence[bytes]) -> list[bytes]:
    if len(hashes) == 1:
        return []
    k = _split(len(hashes))
    if index < k:
        return [*_path(index, hashes[:k]), _root(hashes[k:])]
    return [*_path(index - k, hashes[k:]), _root(hashes[:k])]


def merkle_root(leaves: Sequence[str]) -> str:
    """The root (hex) of the tree over ``leaves`` in sorted order."""
    ordered = sorted(set(leaves))
    if not ordered:
        return EMPTY_ROOT
    return _root([leaf_hash(leaf) for leaf in ordered]).hex()


class InclusionProof(StrictModel):
    leaf: str = Field(max_length=256)
    index: int = Field(ge=0)
    path: list[str] = Field(max_length=64, description="sibling hashes, leaf upwards (hex)")


class AbsenceProof(StrictModel):
    """Why ``absent`` is not a leaf: its neighbours in the sorted tree (either may be None at
    an end; both None only for an empty tree)."""

    absent: str = Field(max_length=256)
    tree_size: int = Field(ge=0)
    left: InclusionProof | None = None
    right: InclusionProof | None = None


def inclusion_proof(leaves: Sequence[str], leaf: str) -> InclusionProof:
    ordered = sorted(set(leaves))
    index = bisect.bisect_left(ordered, leaf)
    if index == len(ordered) or ordered[index] != leaf:
        raise IntegrityError(f"{leaf} is not a leaf of this tree")
    hashes = [leaf_hash(x) for x in ordered]
    return InclusionProof(leaf=leaf, index=index, path=[h.hex() for h in _path(index, hashes)])


def absence_proof(leaves: Sequence[str], absent: str) -> AbsenceProof:
    ordered = sorted(set(leaves))
    index = bisect.bisect_left(ordered, absent)
    if index < len(ordered) and ordered[index] == absent:
        raise IntegrityError(f"{absent} is in the tree: no proof of its absence exists")
    left = inclusion_proof(ordered, ordered[index - 1]) if index > 0 else None
    right = inclusion_proof(ordered, ordered[index]) if index < len(ordered) else None
    return AbsenceProof(absent=absent, tree_size=len(ordered), left=left, right=right)


def verify_inclusion(proof: InclusionProof, tree_size: int, root: str) -> bool:
    """RFC 9162, section 2.1.3.2."""
    if proof.index >= tree_size:
        return False
    fn, sn = proof.index, tree_size - 1
    r = leaf_hash(proof.leaf)
    try:
        path = [bytes.fromhex(p) for p in proof.path]
    except ValueError:
        return False
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _node(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r.hex() == root


def check_absence(proof: AbsenceProof, root: str) -> None:
    """Raise :class:`IntegrityError` naming what fails unless ``proof`` shows that
    ``proof.absent`` is not a leaf of the tree with ``root``."""
    absent, size, left, right = proof.absent, proof.tree_size, proof.left, proof.right
    where = f"absence of {absent[:12]}…"
    if size == 0:
        if root != EMPTY_ROOT or left is not None or right is not None:
            raise IntegrityError(f"{where}: the tree is not empty")
        return
    for side in (left, right):
        if side is not None and not verify_inclusion(side, size, root):
            raise IntegrityError(f"{where}: a neighbour's inclusion proof does not verify")
    if left is None and right is None:
        raise IntegrityError(f"{where}: no neighbour given for a non-empty tree")
    if left is not None and not left.leaf < absent:
        raise IntegrityError(f"{where}: the left neighbour does not sort before it")
    if right is not None and not absent < right.leaf:
        raise IntegrityError(f"{where}: the right neighbour does not sort after it")
    if left is not None and right is not None and right.index != left.index + 1:
        raise IntegrityError(f"{where}: the neighbours are not adjacent leaves")
    if left is None and right is not None and right.index != 0:
        raise IntegrityError(f"{where}: nothing before it, yet its neighbour is not the first")
    if right is None and left is not None and left.index != size - 1:
        raise IntegrityError(f"{where}: nothing after it, yet its neighbour is not the last")


__all__ = [
    "EMPTY_ROOT",
    "AbsenceProof",
    "InclusionProof",
    "absence_proof",
    "check_absence",
    "inclusion_proof",
    "leaf_hash",
    "merkle_root",
    "verify_inclusion",
]
