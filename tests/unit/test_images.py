"""Images without building: the generated Dockerfile (golden), content tags, builder choice, registry names."""

from __future__ import annotations

from pathlib import Path

import pytest

from shiploop.errors import Invalid, Unavailable
from shiploop.images.builders import find_builder
from shiploop.images.dockerfile import dockerfile_for, generate
from shiploop.images.registry import Registry
from shiploop.images.tag import image_tag
from shiploop.spec import load_project

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"


def test_generated_python_dockerfile_matches_the_golden_file():
    shop = load_project(ROOT / "examples" / "shop")
    api = shop.services["api"]
    got = dockerfile_for(api, api.directory)
    assert got.generated and got.path is None
    expected = (GOLDEN / "shop-api.Dockerfile").read_text()
    assert got.text == expected, "regenerate with: python -m tests.unit.test_images"


def test_generated_dockerfile_installs_requirements_and_takes_build_fields(tmp_path: Path):
    (tmp_path / "shiploop.yaml").write_text("name: p\n")
    svc = tmp_path / "web"
    svc.mkdir()
    (svc / "service.yaml").write_text(
        'name: web\nrun: {command: ["python", "-m", "web"]}\n'
        "build: {base_image: 'python:3.12-alpine', args: {APP_ENV: prod}, port: 9000}\n"
    )
    (svc / "requirements.txt").write_text("flask\n")
    text = generate(load_project(tmp_path).services["web"], svc)
    assert "FROM python:3.12-alpine\n" in text
    assert "ARG APP_ENV\n" in text
    assert 'RUN ["pip", "install", "--no-cache-dir", "-r", "requirements.txt"]\n' in text
    assert "ENV PORT=9000" in text and "EXPOSE 9000" in text
    assert text.rstrip().endswith('CMD ["python", "-m", "web"]')
    assert "USER 65532:65532" in text


def test_own_dockerfile_wins_and_a_missing_named_one_is_one_line(tmp_path: Path):
    (tmp_path / "shiploop.yaml").write_text("name: p\n")
    svc = tmp_path / "web"
    svc.mkdir()
    (svc / "service.yaml").write_text('name: web\nrun: {command: ["./web"]}\n')
    (svc / "Containerfile").write_text("FROM scratch\n")
    spec = load_project(tmp_path).services["web"]
    own = dockerfile_for(spec, svc)
    assert not own.generated and own.path == svc / "Containerfile" and own.text == "FROM scratch\n"
    (svc / "service.yaml").write_text('name: web\nrun: {command: ["./web"]}\nbuild: {dockerfile: docker/Dockerfile}\n')
    with pytest.raises(Invalid, match="is not a file"):
        dockerfile_for(load_project(tmp_path).services["web"], svc)


def test_tag_is_the_version_extended_by_dockerfile_and_args():
    base = image_tag("3f9c2a1b7d04", "FROM scratch\n", {})
    assert base.startswith("3f9c2a1b7d04-") and len(base) == 12 + 1 + 8
    assert image_tag("3f9c2a1b7d04", "FROM scratch\n", {}) == base
    assert image_tag("3f9c2a1b7d05", "FROM scratch\n", {}) != base
    assert image_tag("3f9c2a1b7d04", "FROM scratch\nUSER 1\n", {}) != base
    assert image_tag("3f9c2a1b7d04", "FROM scratch\n", {"A": "1"}) != base
    assert image_tag("3f9c2a1b7d04", "FROM scratch\n", {"A": "1", "B": "2"}) == image_tag(
        "3f9c2a1b7d04", "FROM scratch\n", {"B": "2", "A": "1"}
    )


def test_no_builder_is_one_clear_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("SHIPLOOP_BUILDER", raising=False)
    with pytest.raises(Unavailable) as caught:
        find_builder()
    assert caught.value.line() == (
        "no image builder found: building images needs docker, podman or buildah "
        "(hint: sudo apt-get install -y buildah)"
    )


def test_a_docker_without_its_daemon_is_passed_over(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    for name, script in (("docker", "exit 1"), ("buildah", "exit 0")):
        exe = tmp_path / name
        exe.write_text(f"#!/bin/sh\n{script}\n")
        exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("SHIPLOOP_BUILDER", raising=False)
    chosen = find_builder()
    assert chosen.name == "buildah" and "docker is installed but its daemon does not answer" in chosen.note
    assert chosen.global_args[:2] == ("--storage-driver", "vfs")
    assert chosen.push_command("127.0.0.1:5000/x:1", insecure=True)[-3:] == [
        "--tls-verify=false",
        "127.0.0.1:5000/x:1",
        "docker://127.0.0.1:5000/x:1",
    ]


def test_registry_names():
    local = Registry.parse("127.0.0.1:5000/shop")
    assert (local.host, local.prefix, local.insecure) == ("127.0.0.1:5000", "shop", True)
    assert local.repository("web") == "shop/web"
    remote = Registry.parse("https://registry.example.com/team/shop/")
    assert (remote.host, remote.prefix, remote.insecure) == ("registry.example.com", "team/shop", False)
    with pytest.raises(Invalid):
        Registry.parse("")


if __name__ == "__main__":
    shop = load_project(ROOT / "examples" / "shop")
    (GOLDEN / "shop-api.Dockerfile").write_text(generate(shop.services["api"], shop.services["api"].directory))
    print("wrote", GOLDEN / "shop-api.Dockerfile")
