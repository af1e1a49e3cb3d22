from pathlib import Path

from shiploop.versions.snapshot import list_files, snapshot


def make_service(root: Path) -> Path:
    svc = root / "web"
    (svc / "static").mkdir(parents=True)
    (svc / "app.py").write_text("print('hi')\n")
    (svc / "static" / "site.css").write_text("body{}\n")
    (svc / "debug.log").write_text("noise\n")
    (svc / "__pycache__").mkdir()
    (svc / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
    (svc / ".gitignore").write_text("*.log\n")
    return svc


def test_same_content_same_version_and_no_copy(tmp_path):
    svc = make_service(tmp_path)
    store = tmp_path / "versions"
    first = snapshot("web", svc, store)
    assert first.created and (first.path / "app.py").read_text() == "print('hi')\n"
    again = snapshot("web", svc, store)
    assert again.id == first.id and not again.created
    assert len(list((store / "web").iterdir())) == 1


def test_ignored_files_do_not_change_the_version(tmp_path):
    svc = make_service(tmp_path)
    store = tmp_path / "versions"
    first = snapshot("web", svc, store)
    (svc / "debug.log").write_text("more noise\n")
    (svc / ".shiploopignore").write_text("scratch/\n")
    (svc / "scratch").mkdir()
    (svc / "scratch" / "notes.txt").write_text("x")
    assert "debug.log" not in list_files(svc) and "scratch/notes.txt" not in list_files(svc)
    # .shiploopignore itself is content: it changed the id once, and then it is stable.
    second = snapshot("web", svc, store)
    (svc / "scratch" / "notes.txt").write_text("y")
    assert snapshot("web", svc, store).id == second.id
    assert not (first.path / "debug.log").exists()


def test_content_change_and_exec_bit_change_the_version(tmp_path):
    svc = make_service(tmp_path)
    store = tmp_path / "versions"
    a = snapshot("web", svc, store)
    (svc / "app.py").write_text("print('hello')\n")
    b = snapshot("web", svc, store)
    (svc / "app.py").chmod(0o755)
    c = snapshot("web", svc, store)
    assert len({a.id, b.id, c.id}) == 3
    assert (a.path / "app.py").read_text() == "print('hi')\n"  # old snapshots are immutable
