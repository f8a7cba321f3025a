"""The standalone loader: the docs page includes the module itself; it runs an exported
model with nothing of the project (no package, no cache) and agrees with the project's own
model."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load as load_safetensors
from safetensors.torch import save
from typer.testing import CliRunner

import tmc.common.standalone.loader as loader_module
from tests.helpers import randomize_batchnorm
from tests.registries import digits_registry
from tmc.cli import app
from tmc.common.components import Delta
from tmc.common.data.inputs import DataSpec, InputSpec, prepare_image
from tmc.common.hashing import tensors_sha256
from tmc.common.models import BaseModelSpec, MaterializedBase, SmallCNN, build_network, materialize
from tmc.common.standalone import METADATA_KEY, ModelFileError, load, preprocess, read_npy
from tmc.common.tangent import TangentModel
from tmc.server.registry import BaseRecord, ModelVersion, model_bytes

REPO = Path(__file__).resolve().parents[3]
LOADER = Path(loader_module.__file__)
PAGE = REPO / "docs" / "standalone.md"
runner = CliRunner()

# Run in the child before the loader: any import of the project, its dependencies that
# torch does not need, or safetensors fails, so the loader can only use what it claims.
_BLOCKER = """
import runpy, sys
BLOCKED = {"tmc", "common", "server", "client", "bench", "tests", "safetensors", "numpy",
           "pydantic"}
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"the standalone loader imported {name}")
        return None
sys.meta_path.insert(0, Block())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def docs_loader() -> str:
    """The loader as the docs page shows it: the page's Python block must be exactly the
    include of the module's source file, which the site build resolves (snippets)."""
    text = PAGE.read_text()
    found = re.search(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert found is not None, "docs/standalone.md should show the loader"
    include = found.group(1).strip()
    assert include == f'--8<-- "{LOADER.relative_to(REPO)}"', include
    return (REPO / include.split('"')[1]).read_text()


def test_the_docs_page_shows_the_loader_exactly() -> None:
    assert docs_loader() == LOADER.read_text()


def test_the_loader_imports_only_the_standard_library_torch_and_torchvision() -> None:
    allowed = set(sys.stdlib_module_names) | {"torch", "torchvision", "PIL", "__future__"}
    tree = ast.parse(LOADER.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported <= allowed, imported - allowed
    assert {"torch", "json", "hashlib"} <= imported


def test_the_project_builds_the_loaders_small_cnn() -> None:
    assert SmallCNN is loader_module.SmallCNN
    standalone = loader_module.build_network("small-cnn", num_classes=10, in_channels=1)
    project = build_network(BaseModelSpec())
    assert standalone.state_dict().keys() == project.state_dict().keys()


@pytest.fixture(scope="module")
def exported(
    tmp_path_factory: pytest.TempPathFactory, digits_base: MaterializedBase
) -> tuple[Path, Path]:
    """A registry of three silos, two rounds, and its current model exported by ``tmc``."""
    folder = tmp_path_factory.mktemp("exported")
    root = digits_registry(folder / "registry", digits_base, rounds=2)
    out = folder / "model.safetensors"
    result = runner.invoke(app, ["export", "--registry", str(root), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["version"] == 2
    assert payload["kind"] == "model"
    assert payload["bytes"] == out.stat().st_size
    return root, out


def _inputs(folder: Path) -> list[Path]:
    image = folder / "seven.png"
    pixels = np.full((32, 32), 255, dtype=np.uint8)
    pixels[4:8, 4:28] = 0
    pixels[8:28, 20:24] = 0
    Image.fromarray(pixels).save(image)
    colour = folder / "colour.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 13, 3), dtype=np.uint8)).save(colour)
    batch = folder / "batch.npy"
    np.save(batch, rng.random((4, 1, 8, 8), dtype=np.float32))
    single = folder / "single.npy"
    np.save(single, rng.random((1, 8, 8)).astype(np.float64))
    return [image, colour, batch, single]


def test_the_docs_loader_runs_the_export_outside_the_project(
    exported: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, model = exported
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    script = outside / "loader.py"
    script.write_text(docs_loader())
    inputs = _inputs(outside)
    home, cache = tmp_path / "home", tmp_path / "cache"
    home.mkdir()
    cache.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if key in ("PATH", "LANG", "LC_ALL", "SYSTEMROOT", "TMPDIR")
    }
    env.update({"HOME": str(home), "TMC_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1"})
    child = subprocess.run(
        [sys.executable, "-c", _BLOCKER, str(script), str(model), *map(str, inputs)],
        cwd=outside,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    standalone = json.loads(child.stdout)

    # The project's own answer, with an empty cache: the registry alone must suffice.
    monkeypatch.setenv("TMC_CACHE_DIR", str(cache))
    result = runner.invoke(app, ["predict", "--registry", str(root), *map(str, inputs), "--json"])
    assert result.exit_code == 0, result.output
    project = json.loads(result.stdout)
    assert list(cache.iterdir()) == []  # nothing was pre-trained or cached
    assert standalone["version"] == project["version"] == 2
    assert standalone["classes"] == project["classes"] == [str(d) for d in range(10)]
    assert len(standalone["predictions"]) == len(project["predictions"]) == 7
    for mine, theirs in zip(standalone["predictions"], project["predictions"], strict=True):
        assert mine["input"].rsplit("/", 1)[-1] == theirs["input"].rsplit("/", 1)[-1]
        assert (mine["class"], mine["label"]) == (theirs["class"], theirs["label"])
        assert torch.allclose(
            torch.tensor(mine["logits"]), torch.tensor(theirs["logits"]), atol=1e-5
        )
    # Linearised, not θ0 + Δ loaded into the plain network: those logits differ.
    state = load_safetensors(model.read_bytes())
    plain = SmallCNN(num_classes=10).eval()
    merged = {
        k.removeprefix("theta0."): v + state.get("delta." + k.removeprefix("theta0."), 0)
        for k, v in state.items()
        if k.startswith("theta0.")
    }
    plain.load_state_dict(merged)
    batch = torch.from_numpy(np.load(inputs[2]))
    with torch.no_grad():
        wrong = plain(batch)
    right = torch.tensor([p["logits"] for p in standalone["predictions"][2:6]])
    assert not torch.allclose(wrong, right, atol=1e-3)


def test_resnet18_matches_the_tangent_model() -> None:
    spec = BaseModelSpec(architecture="resnet18", num_classes=5, in_channels=3, tangent="full")
    base = materialize(spec)
    randomize_batchnorm(base.network, seed=3)
    state = {k: v.clone() for k, v in base.network.state_dict().items()}
    record = BaseRecord.from_materialized(base).model_copy(update={"sha256": tensors_sha256(state)})
    generator = torch.Generator().manual_seed(7)
    delta = Delta(
        {
            name: 0.01 * torch.randn(shape, generator=generator)
            for name, (shape, _) in base.tangent_shapes().items()
        }
    )
    version = ModelVersion(
        number=3,
        component_ids=("a" * 64,),
        weighting="uniform",
        delta_sha256=tensors_sha256(delta),
        blob_sha256="b" * 64,
    )
    data = DataSpec(
        classes=("ant", "bee", "cat", "dog", "eel"),
        input=InputSpec(channels=3, size=32, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3)),
    )
    model = load(model_bytes(state, delta, base=record, data=data, version=version))
    assert model.classes == data.classes
    assert model.version == 3
    x = torch.randn(2, 3, 32, 32, generator=generator)
    reference = TangentModel(base.network, base.tangent_names)
    reference.load_delta(dict(delta))
    with torch.no_grad():
        expected = reference(x)
    assert torch.allclose(model.logits(x), expected, atol=1e-5)
    assert not torch.allclose(model.logits(x), base.network(x), atol=1e-3)


def test_preprocess_is_prepare_image() -> None:
    rng = np.random.default_rng(1)
    rgb = Image.fromarray(rng.integers(0, 256, (17, 29, 3), dtype=np.uint8))
    gray = Image.fromarray(rng.integers(0, 256, (9, 12), dtype=np.uint8))
    specs = [
        InputSpec(channels=3, size=16, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
        InputSpec(channels=1, size=8, invert=True),
        InputSpec(channels=1, size=5, mean=(0.449,), std=(0.226,)),
    ]
    for spec in specs:
        for image in (rgb, gray):
            expected = prepare_image(image, spec)
            got = preprocess(image, spec.model_dump(mode="json"))
            assert got.shape == expected.shape == spec.shape
            assert torch.equal(got, expected)


def test_read_npy_reads_what_numpy_writes(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    for array in (
        rng.random((2, 3, 4, 5), dtype=np.float32),
        rng.random((3, 4, 5)),
        np.asfortranarray(rng.random((3, 4, 5), dtype=np.float32)),
    ):
        path = tmp_path / "a.npy"
        np.save(path, array)
        assert torch.equal(read_npy(path), torch.from_numpy(array.astype(np.float32)))
    np.save(tmp_path / "ints.npy", np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(ModelFileError, match="float32/float64"):
        read_npy(tmp_path / "ints.npy")


def _rewrite(file: bytes, **changes: object) -> bytes:
    """The model file with its metadata changed (tensors kept)."""
    header_len = int.from_bytes(file[:8], "little")
    info = json.loads(json.loads(file[8 : 8 + header_len])["__metadata__"][METADATA_KEY])
    info.update(changes)
    return save(load_safetensors(file), metadata={METADATA_KEY: json.dumps(info)})


def test_files_that_are_not_tmc_models_are_refused(
    exported: tuple[Path, Path], tmp_path: Path
) -> None:
    root, model = exported
    data = model.read_bytes()
    assert load(data).version == 2
    composition = tmp_path / "delta.safetensors"
    result = runner.invoke(
        app, ["export", "--registry", str(root), "--delta-only", "--out", str(composition)]
    )
    assert result.exit_code == 0, result.output
    flipped = bytearray(data)
    flipped[-5] ^= 0x01
    header_len = int.from_bytes(data[:8], "little")
    cases = {
        "random bytes": (os.urandom(200), "not a TMC model"),
        "empty": (b"", "shorter than"),
        "the Δ-only composition": (composition.read_bytes(), "no tmc.model metadata"),
        "plain safetensors": (save({"w": torch.zeros(2)}), "no tmc.model metadata"),
        "truncated": (data[: len(data) // 2], "do not fit the file"),
        "trailing bytes": (data + b"\0" * 8, "bytes after its last tensor"),
        "a flipped bit": (bytes(flipped), "do not match its recorded hashes"),
        "header length lies": ((10**9).to_bytes(8, "little") + data[8:], "header length"),
        "header not JSON": (data[:8] + b"{" * header_len + data[8 + header_len :], "not a TMC"),
        "unknown architecture": (_rewrite(data, architecture="vit-b16"), "cannot build"),
        "newer format": (_rewrite(data, format_version=2), "format version 2"),
        "other format": (_rewrite(data, format="onnx"), "not of format"),
        "class names": (
            _rewrite(data, data={"classes": ["a", "b"], "input": {"channels": 1, "size": 8}}),
            "class names",
        ),
        "tangent names": (_rewrite(data, tangent_names=["fc.weight"]), "tangent parameters"),
        "missing key": (_rewrite(data, num_classes=None), "not a TMC model"),
    }
    for name, (payload, message) in cases.items():
        with pytest.raises(ModelFileError, match=re.escape(message)):
            load(payload)
        assert name  # every case refused with its own message
    with pytest.raises(ModelFileError, match="cannot read"):
        load(tmp_path / "missing.safetensors")
