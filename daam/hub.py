"""Where checkpoints come from: a local directory, or a Hugging Face Hub repo id.

Only safetensors weights and JSON config are read: pickled .bin/.pt files can run code
when loaded, so a checkpoint that has only those is refused without opening them."""

from __future__ import annotations

import os
from pathlib import Path

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


def _check_directory(directory: Path) -> Path:
    if (directory / "model.safetensors").is_file() and (directory / "config.json").is_file():
        return directory
    pickles = sorted(p.name for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES) if directory.is_dir() else []
    if pickles:
        raise ValueError(
            f"{directory} holds only pickled weights ({', '.join(pickles)}); they are refused because unpickling can "
            "run arbitrary code. Convert them to model.safetensors with config.json."
        )
    raise FileNotFoundError(f"{directory} is not a DAAM checkpoint: it needs model.safetensors and config.json")


def resolve_checkpoint(path_or_repo_id: str | os.PathLike) -> Path:
    """A local checkpoint directory for a path, or for a Hub repo id (downloaded only when online)."""
    path = Path(path_or_repo_id)
    if path.suffix in PICKLE_SUFFIXES:
        raise ValueError(f"{path.name}: pickled weights are refused because unpickling can run arbitrary code; "
                         "use a directory with model.safetensors and config.json")
    if path.exists():
        return _check_directory(path if path.is_dir() else path.parent)
    repo_id = str(path_or_repo_id)
    if repo_id.count("/") != 1 or repo_id.startswith((".", "/")):
        raise FileNotFoundError(f"no checkpoint at {repo_id!r}: not a local directory nor a Hub repo id (owner/name)")
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        raise FileNotFoundError(f"{repo_id!r} is not a local directory and the Hub is offline (HF_HUB_OFFLINE is set)")
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(repo_id, allow_patterns=["model.safetensors", "ood.safetensors", "config.json", "*.json",
                                                         "README.md"])
    except Exception as error:  # network errors, missing repos: all mean "cannot load"
        raise FileNotFoundError(f"could not fetch {repo_id!r} from the Hugging Face Hub: {error}") from error
    return _check_directory(Path(local))
