"""Refuse an image that is not what its build arguments promise (run at the end of a build).

    python check-image.py --torch cpu --imports tmc.server.admin.proto,tmc.server.federation.app

``--torch cpu``: torch must be a CPU build and no ``nvidia-*`` CUDA library may be
installed (PyPI's Linux torch wheel is the CUDA build, about 4 GB with its libraries: a
wrong TORCH_INDEX_URL gives it silently). ``--torch cuda``: a CUDA build. Either way Ray
(the simulation engine, ``pip install '.[simulation]'``) must be absent: a deployment never
simulates.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import sys


def problems(torch_variant: str, imports: list[str]) -> list[str]:
    found: list[str] = []
    import torch

    cuda = torch.version.cuda
    if torch_variant == "cpu" and cuda is not None:
        found.append(
            f"torch {torch.__version__} is a CUDA {cuda} build, but TORCH_VARIANT=cpu: "
            "TORCH_INDEX_URL must serve CPU wheels (e.g. PyTorch's /whl/cpu index or a "
            "mirror of it); pass TORCH_VARIANT=cuda to accept a CUDA build"
        )
    if torch_variant == "cuda" and cuda is None:
        found.append(f"torch {torch.__version__} is a CPU build, but TORCH_VARIANT=cuda")
    if torch_variant == "cpu":
        nvidia = sorted(
            d.metadata["Name"]
            for d in importlib.metadata.distributions()
            if d.metadata["Name"] and d.metadata["Name"].lower().startswith("nvidia-")
        )
        if nvidia:
            found.append(f"CUDA libraries installed in a CPU image: {', '.join(nvidia)}")
    if importlib.util.find_spec("ray") is not None:
        found.append("ray is installed: install the project without the `simulation` extra")
    for name in imports:
        try:
            importlib.import_module(name)
        except Exception as exc:  # any import failure makes the image useless
            found.append(f"import {name} failed: {type(exc).__name__}: {exc}")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--torch", choices=("cpu", "cuda"), required=True)
    parser.add_argument("--imports", default="", help="comma-separated modules to import")
    args = parser.parse_args()
    found = problems(args.torch, [m for m in args.imports.split(",") if m])
    for problem in found:
        sys.stderr.write(f"image check failed: {problem}; the image was not built\n")
    if not found:
        import torch

        print(f"image check ok: torch {torch.__version__} (cuda {torch.version.cuda}), no ray")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
