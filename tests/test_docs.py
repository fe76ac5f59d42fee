"""The documentation: the README's examples run as written, the site builds strictly, and its
generated parts (the settings table, the reasons' sentences) are the code's (issue 33)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import REPO, free_port, is_ready, poll, stop_process

README = REPO / "README.md"
EXAMPLE_MARKER = "<!-- example -->"
# The README's relative links: [text](docs/x.md#anchor), [text](SECURITY.md).
_LINK = re.compile(r"\]\((?!https?://)([^)#\s]+)(#[^)\s]*)?\)")


def _generator():
    """docs/generate.py, a script beside the pages rather than a package module."""
    spec = importlib.util.spec_from_file_location("docs_generate", REPO / "docs" / "generate.py")
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # for @dataclass
    spec.loader.exec_module(module)
    return module


def _mkdocs() -> str:
    return str(Path(sys.executable).with_name("mkdocs"))


def readme_examples(text: str) -> list[str]:
    """The body of each ```bash block that follows an EXAMPLE_MARKER line (blank lines
    between them allowed), in order."""
    examples = []
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.strip() != EXAMPLE_MARKER:
            continue
        start = next(i for i in range(index + 1, len(lines)) if lines[i].strip())
        assert lines[start].strip() == "```bash", f"README line {start + 1}: no ```bash block " \
                                                  f"after {EXAMPLE_MARKER}"
        end = next(i for i in range(start + 1, len(lines)) if lines[i].strip() == "```")
        examples.append("\n".join(lines[start + 1:end]) + "\n")
    return examples


def test_settings_table_and_reasons_match_the_code():
    generate = _generator()
    for path, text in generate.expected().items():
        assert path.read_text() == text, (
            f"{path.relative_to(REPO)} differs from the code: run "
            ".venv/bin/python docs/generate.py and commit the result")


def test_settings_table_lists_every_setting_once():
    from app.config import Settings

    table = (REPO / "docs" / "settings.md").read_text()
    for name in Settings.model_fields:
        assert table.count(f"| `PNEUMONIA_{name.upper()}` |") == 1, name


def test_settings_table_follows_a_changed_comment(tmp_path):
    """The guard is real: a comment edited in the settings class changes the table."""
    generate = _generator()
    config = tmp_path / "config.py"
    config.write_text((REPO / "app" / "config.py").read_text().replace(
        "# Where models live:", "# Where the models are kept:"))
    rows = {row.variable: row for row in generate.settings_rows(config)}
    assert rows["PNEUMONIA_MODEL_DIR"].description.startswith("Where the models are kept:")
    assert generate.settings_page(list(rows.values())) != generate.settings_page()


def test_readme_is_short_and_its_links_lead_somewhere():
    text = README.read_text()
    assert len(text.splitlines()) <= 150
    for target, _ in _LINK.findall(text):
        assert (REPO / target).exists(), f"README links to {target}, which does not exist"
    assert len(readme_examples(text)) == 3


def test_mkdocs_builds_strictly(tmp_path):
    """Every link and anchor between the pages resolves (mkdocs.yml's validation: warn, and
    --strict fails on a warning), and no page asks the internet for anything."""
    site = tmp_path / "site"
    built = subprocess.run([_mkdocs(), "build", "--strict", "--site-dir", str(site)],
                           cwd=REPO, capture_output=True, text=True, timeout=120,
                           env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert built.returncode == 0, built.stdout + built.stderr
    remote = re.compile(r"""<(?:script|link|img)\b[^>]*\b(?:src|href)=["']?(?:https?:)?//""")
    for page in site.rglob("*.html"):
        assert not remote.search(page.read_text()), f"{page.name} loads a remote resource"


def _fresh_copy(destination: Path) -> Path:
    """The repository as a clone of the working tree would hold it: tracked files and new
    files git does not ignore (so an uncommitted README is what runs), and the existing
    .venv linked in (nothing installed)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=REPO, capture_output=True,
                            check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():  # a tracked file deleted in the work tree is not copied
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    (destination / ".venv").symlink_to(REPO / ".venv")
    return destination


@pytest.mark.slow
def test_readme_examples_run_verbatim_in_a_fresh_copy(tmp_path):
    """Each README example, in order, from the root of a fresh copy, against that copy's
    own server (`python -m app` there, as `make run` serves it) on free ports."""
    if shutil.which("storescu") is None:
        pytest.fail("dcmtk's storescu not found: install Debian's 'dcmtk' (make test does)")
    copy = _fresh_copy(tmp_path / "clone")
    port, dicom_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("PNEUMONIA_")}
    env.update(PATH=f"{REPO / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}",
               PNEUMONIA_URL=url, PNEUMONIA_DICOM_PORT=str(dicom_port))
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "app"], cwd=copy, stdout=log,
                                  stderr=subprocess.STDOUT,
                                  env={**env, "PNEUMONIA_PORT": str(port)})
    try:
        poll(lambda: server.poll() is not None or is_ready(url), 120, "the copy's server")
        assert server.poll() is None, "server exited: " + log_path.read_text()[-2000:]
        for number, example in enumerate(readme_examples(README.read_text()), start=1):
            ran = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", example], cwd=copy,
                                 env=env, capture_output=True, text=True, timeout=120)
            assert ran.returncode == 0, (
                f"README example {number} failed ({ran.returncode}):\n{example}\n"
                f"stdout:\n{ran.stdout[-3000:]}\nstderr:\n{ran.stderr[-3000:]}")
    finally:
        stop_process(server)
