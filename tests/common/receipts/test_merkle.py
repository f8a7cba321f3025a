"""The Merkle tree of a version's component ids: inclusion and absence proofs."""

from __future__ import annotations

import hashlib
import random

import pytest

from tmc.common.errors import IntegrityError
from tmc.common.receipts import (
    EMPTY_ROOT,
    absence_proof,
    check_absence,
    inclusion_proof,
    merkle_root,
    verify_inclusion,
)


def _ids(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return sorted(hashlib.sha256(str(rng.random()).encode()).hexdigest() for _ in range(n))


def test_root_is_a_function_of_the_set() -> None:
    ids = _ids(9)
    assert merkle_root(ids) == merkle_root(list(reversed(ids))) == merkle_root(ids + ids[:2])
    assert merkle_root(ids) != merkle_root(ids[:-1])
    assert merkle_root([]) == EMPTY_ROOT


def test_rfc9162_small_trees() -> None:
    # MTH({d0}) = H(0x00 d0); MTH({d0, d1}) = H(0x01 MTH(d0) MTH(d1))
    leaf = lambda s: hashlib.sha256(b"\x00" + s.encode()).digest()  # noqa: E731
    assert merkle_root(["a"]) == leaf("a").hex()
    assert merkle_root(["a", "b"]) == hashlib.sha256(b"\x01" + leaf("a") + leaf("b")).hexdigest()
    three = hashlib.sha256(
        b"\x01" + hashlib.sha256(b"\x01" + leaf("a") + leaf("b")).digest() + leaf("c")
    ).hexdigest()
    assert merkle_root(["a", "b", "c"]) == three


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33])
def test_every_inclusion_proof_verifies_and_a_wrong_one_does_not(n: int) -> None:
    ids = _ids(n, seed=n)
    root = merkle_root(ids)
    for leaf in ids:
        proof = inclusion_proof(ids, leaf)
        assert verify_inclusion(proof, n, root)
        assert not verify_inclusion(proof, proof.index, root)  # index beyond the size
        if n > 1:
            moved = proof.model_copy(update={"index": (proof.index + 1) % n})
            assert not verify_inclusion(moved, n, root)
        assert not verify_inclusion(proof.model_copy(update={"leaf": "f" * 64}), n, root)
        if proof.path:
            flipped = ["0" * 64, *proof.path[1:]]
            assert not verify_inclusion(proof.model_copy(update={"path": flipped}), n, root)


@pytest.mark.parametrize("n", [0, 1, 2, 5, 8, 13])
def test_absence_proofs_at_the_ends_and_between(n: int) -> None:
    ids = _ids(n, seed=100 + n)
    root = merkle_root(ids)
    candidates = ["0" * 64, "f" * 64, *(_ids(6, seed=999))]
    for absent in candidates:
        if absent in ids:
            continue
        check_absence(absence_proof(ids, absent), root)


def test_a_present_id_has_no_absence_proof_and_a_forged_one_fails() -> None:
    ids = _ids(8, seed=3)
    with pytest.raises(IntegrityError, match="is in the tree"):
        absence_proof(ids, ids[4])
    # Forge: claim ids[4] is absent, citing neighbours that skip over it.
    forged = absence_proof([i for i in ids if i != ids[4]], ids[4])
    with pytest.raises(IntegrityError, match=r"inclusion proof|adjacent"):
        check_absence(forged.model_copy(update={"tree_size": 8}), merkle_root(ids))
    # Neighbours that really are in the tree but not adjacent.
    left, right = inclusion_proof(ids, ids[3]), inclusion_proof(ids, ids[5])
    skipping = forged.model_copy(update={"tree_size": 8, "left": left, "right": right})
    with pytest.raises(IntegrityError, match="adjacent"):
        check_absence(skipping, merkle_root(ids))
