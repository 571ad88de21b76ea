"""The promises the repository makes to a newcomer and to CI."""

import importlib
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = re.search(r"^TEST_COMMAND='(.+)'$", ci, re.M).group(1)
    assert test_command in readme_commands()
    assert 'bash -c "$TEST_COMMAND"' in ci


def test_readme_has_spaces_header_and_two_setup_commands():
    text = (ROOT / "README.md").read_text()
    header = text.split("---")[1]
    for key in ("title:", "sdk: gradio", "sdk_version:", "app_file: app.py", "license:"):
        assert key in header
    commands = readme_commands()
    assert len(commands) == 2 and all(c.startswith("pip install -r requirements.txt") for c in commands)


def test_core_imports_as_the_readme_promises():
    out = subprocess.run([sys.executable, "-c", "from daam import DensityBlock, GaussianBlock; print('ok')"],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr


@pytest.mark.slow
def test_demo_runs():
    out = subprocess.run([sys.executable, "-m", "daam"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "mixture" in out.stdout and "product" in out.stdout


@pytest.mark.parametrize("script", ["daam-train", "daam-compare"])
def test_the_installed_commands_are_the_modules_command_lines(script, capsys):
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, function = scripts[script].partition(":")
    main = getattr(importlib.import_module(module), function)
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0 and "modality" in capsys.readouterr().out
