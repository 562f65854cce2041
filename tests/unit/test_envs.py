"""Named environments on disk (epe.envs): names, sizes, specs, and the locks that keep an
environment in use from being deleted. Real folders, no builds (the acceptance tests
build)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from epe.envs import Environment, Spec, check_spec, listing, read, registry, remove, sweep
from epe.errors import Conflict, InvalidRequest, NotFound


def make_env(root: Path, name: str) -> Environment:
    """A folder that looks complete to the registry (no venv inside)."""
    folder = root / name
    folder.mkdir(parents=True)
    os.close(registry.create_lock(folder))
    env = Environment(name=name, path=folder, id="abc", description="d", packages=("p",),
                      created=1.0, python_version="3.11", size=10)
    (folder / registry.META).write_bytes(env.to_json())
    return env


@pytest.mark.parametrize("size, shown", [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"),
                                         (int(1.7 * 1024**3), "1.7 GiB"),
                                         (5 * 1024**4, "5.0 TiB")])
def test_sizes_read_as_oml_shows_them(size: int, shown: str) -> None:
    assert registry.human_size(size) == shown


@pytest.mark.parametrize("name", ["a", "seaborn_env", "A-1", "x" * 64])
def test_good_names(name: str) -> None:
    assert registry.check_name(name) == name


@pytest.mark.parametrize("name", ["", "-a", "_a", ".building-a", "a/b", "..", "a b", "x" * 65,
                                  "é"])
def test_bad_names(name: str) -> None:
    with pytest.raises(InvalidRequest):
        registry.check_name(name)


def test_find_links_means_no_index_unless_said_otherwise() -> None:
    assert Spec("e", ("p",)).pip_options() == []
    assert Spec("e", ("p",), find_links="/w").pip_options() == ["--no-index", "--find-links",
                                                                "/w"]
    assert Spec("e", ("p",), find_links="/w", no_index=False).pip_options() == [
        "--find-links", "/w"]
    assert Spec("e", ("p",), no_index=True).pip_options() == ["--no-index"]


@pytest.mark.parametrize("spec", [Spec("e"), Spec("e", ("-r/etc/passwd",)),
                                  Spec("e", ("a\nb",)), Spec("e", ("dist/x.whl",)),
                                  Spec("e", ("p",), find_links="wheels"),
                                  Spec("e", ("p",), description="x" * 5000),
                                  Spec("../e", ("p",))])
def test_specs_refused_before_building(spec: Spec, tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest):
        check_spec(spec, tmp_path)


def test_a_spec_for_an_existing_name_is_a_conflict(tmp_path: Path) -> None:
    make_env(tmp_path, "e")
    check_spec(Spec("f", ("p",), requirements="p\n"), tmp_path)
    with pytest.raises(Conflict):
        check_spec(Spec("e", ("p",)), tmp_path)


def test_what_an_environment_was_built_from_is_kept_to_build_it_again(tmp_path: Path) -> None:
    # A backup keeps env.json; restoring builds the environment from it (docs/deploy.md).
    spec = Spec("e1", ("a>=1", "/w/b.whl"), "c==2\n", "d", "/wheels", False)
    folder = tmp_path / "e1"
    folder.mkdir()
    env = Environment(name="e1", path=folder, id="x", description=spec.description,
                      packages=spec.packages, created=1.0, python_version="3.11", size=1,
                      requirements=spec.requirements, find_links=spec.find_links,
                      no_index=spec.no_index)
    (folder / registry.META).write_bytes(env.to_json())
    os.close(registry.create_lock(folder))
    kept = read(tmp_path, "e1")
    assert kept is not None and Spec.of(kept) == spec
    # An env.json written before these were kept reads as built from packages alone.
    (folder / registry.META).write_bytes(b'{"id": "x", "description": "d", "packages": '
                                         b'["p"], "created": 1.0, "python": "3.11"}')
    older = read(tmp_path, "e1")
    assert older is not None and Spec.of(older) == Spec("e1", ("p",), None, "d")


def test_only_complete_environments_are_read_and_listed(tmp_path: Path) -> None:
    env = make_env(tmp_path, "e")
    (tmp_path / ".building-f-123").mkdir()
    (tmp_path / "g").mkdir()  # no env.json: not complete
    (tmp_path / "h").mkdir()
    (tmp_path / "h" / registry.META).write_text("{not json")  # damaged: ignored
    assert read(tmp_path, "e") == env
    assert read(tmp_path, "g") is None and read(tmp_path, "../e") is None
    assert read(tmp_path, "h") is None
    assert [e.name for e in listing(tmp_path)] == ["e"]
    assert listing(tmp_path / "missing") == []


def test_an_environment_held_is_not_removed(tmp_path: Path) -> None:
    make_env(tmp_path, "e")
    held = registry.hold_shared(tmp_path, "e")
    assert held is not None
    with pytest.raises(Conflict):
        remove(tmp_path, "e")
    again = registry.hold_shared(tmp_path, "e")  # shared: many may hold it
    assert again is not None
    registry.release(held[0])
    with pytest.raises(Conflict):
        remove(tmp_path, "e")
    registry.release(again[0])
    remove(tmp_path, "e")
    assert not (tmp_path / "e").exists() and listing(tmp_path) == []
    assert registry.hold_shared(tmp_path, "e") is None
    with pytest.raises(NotFound):
        remove(tmp_path, "e")


def test_an_environment_being_removed_cannot_be_held(tmp_path: Path) -> None:
    make_env(tmp_path, "e")
    with registry.exclusive(tmp_path / "e" / registry.LOCK) as had:
        assert had
        assert registry.hold_shared(tmp_path, "e") is None


def test_sweep_removes_leftovers_but_not_a_build_in_progress(tmp_path: Path) -> None:
    make_env(tmp_path, "e")
    (tmp_path / ".deleting-d-1").mkdir()
    crashed = tmp_path / ".building-c-1"
    crashed.mkdir()
    os.close(registry.create_lock(crashed))  # its builder died: the lock is free
    running = tmp_path / ".building-r-1"
    running.mkdir()
    lock = registry.create_lock(running)
    try:
        assert sorted(sweep(tmp_path)) == [".building-c-1", ".deleting-d-1"]
        assert sorted(p.name for p in tmp_path.iterdir()) == [".building-r-1", "e"]
    finally:
        os.close(lock)


def test_installed_packages_are_counted_once_by_normalized_name(tmp_path: Path) -> None:
    own, base = tmp_path / "own", tmp_path / "base"
    for folder, entries in ((own, ["Foo_Bar-2.0.dist-info", "x.py"]),
                            (base, ["foo_bar-1.0.dist-info", "numpy-1.26.dist-info",
                                    "old-0.1-py3.11.egg-info"])):
        folder.mkdir()
        for entry in entries:
            (folder / entry).mkdir()
    assert registry.installed_packages([own, base]) == {"foo-bar", "numpy", "old"}
