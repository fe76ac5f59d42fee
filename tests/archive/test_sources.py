"""SRC arguments into files: folders, globs, file lists, URIs, include patterns."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.archive.sources import SourceError, list_sources, read_source


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for name in ("b.dcm", "a.jpeg", "sub/c.png", "sub/.hidden", ".cache/d.jpeg", "e.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(name.encode() * 3)
    return tmp_path


def _names(listed, root: Path) -> list[str]:
    return [str(Path(item.source.removeprefix("file://")).relative_to(root))
            for item in listed]


def test_a_folder_lists_every_file_under_it_sorted_hidden_ones_left_out(tree):
    listed = list_sources([str(tree)])
    assert _names(listed, tree) == ["a.jpeg", "b.dcm", "e.txt", "sub/c.png"]
    assert [item.size for item in listed] == [len(b"a.jpeg") * 3, len(b"b.dcm") * 3,
                                              len(b"e.txt") * 3, len(b"sub/c.png") * 3]


def test_globs_include_patterns_and_a_file_named_twice(tree):
    assert _names(list_sources([f"{tree}/**/*.png", f"{tree}/a.jpeg", str(tree)],
                               include=["*.png", "*.jpeg"]), tree) == ["sub/c.png", "a.jpeg"]
    assert _names(list_sources([str(tree)], include=[f"{tree}/sub/*"]), tree) == ["sub/c.png"]


def test_a_file_list_names_files_folders_and_uris_relative_to_itself(tree):
    (tree / "films.txt").write_text(f"# the films\nb.dcm\n\nsub\nfile://{tree}/a.jpeg\n")
    listed = list_sources([str(tree / "films.txt")])
    assert _names(listed, tree) == ["b.dcm", "sub/c.png", "a.jpeg"]
    assert listed[2].source == f"file://{tree}/a.jpeg"


def test_a_uri_lists_through_pyarrow_and_reads_back(tree):
    listed = list_sources([f"file://{tree}/sub/", f"file://{tree}/*.dcm"])
    assert [item.source for item in listed] == [f"file://{tree}/sub/c.png",
                                                f"file://{tree}/b.dcm"]
    assert read_source(listed[0].source, 100) == b"sub/c.png" * 3
    assert read_source(listed[0].source, 4) == b"sub/c"  # at most limit + 1 bytes


def test_the_runs_own_output_inside_a_source_is_not_listed(tree):
    (tree / "out" / "results").mkdir(parents=True)
    (tree / "out" / "results" / "part.parquet").write_bytes(b"PAR1")
    assert "out/results/part.parquet" not in _names(
        list_sources([str(tree)], exclude=str(tree / "out")), tree)


@pytest.mark.parametrize("source", ["missing-folder", "nothing-*.dcm", "file:///no/such/dir"])
def test_a_source_that_names_nothing_is_refused(tmp_path, source):
    with pytest.raises(SourceError):
        list_sources([str(tmp_path / source) if "://" not in source else source])


@pytest.mark.parametrize("target", ["loop.jpeg", "nowhere.jpeg"])
def test_a_link_in_a_folder_that_leads_in_a_circle_or_nowhere_is_named(tree, target):
    """A link to itself (ELOOP) or to a missing file: a SourceError naming it, not an
    OSError's traceback."""
    (tree / "sub" / "link.jpeg").symlink_to(tree / "sub" / target)
    if target == "loop.jpeg":
        (tree / "sub" / "loop.jpeg").symlink_to(tree / "sub" / "loop.jpeg")
    with pytest.raises(SourceError, match="link.jpeg: cannot be read"):
        list_sources([str(tree)])
