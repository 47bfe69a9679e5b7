"""The artifact store: bytes and content type round-trip; no key reaches outside its directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from vigil.rca.artifacts import (
    ArtifactNotFound, InvalidArtifactKey, LocalArtifactStore, build_artifact_store, chart_key, slug,
)
from vigil.settings import CoreSettings, RcaSettings


class MemoryStore:
    """What an operator's plug-in looks like: any object with put/get/delete."""

    def __init__(self, rca: RcaSettings) -> None:
        self.rca = rca

    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    def get(self, key: str): ...  # noqa: ANN201

    def delete(self, key: str) -> None: ...


def test_round_trip_and_delete(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "artifacts")
    key = chart_key(7, slug("Checkout error rate"))
    store.put(key, b"\x89PNG...", "image/png")
    got = store.get(key)
    assert (got.data, got.content_type) == (b"\x89PNG...", "image/png")
    assert key == "incidents/7/charts/checkout-error-rate.png"
    store.delete(key)
    with pytest.raises(ArtifactNotFound):
        store.get(key)
    store.delete(key)  # deleting twice is fine


@pytest.mark.parametrize("key", [
    "../outside", "incidents/../../outside", "/etc/passwd", "incidents/./x", "incidents//x", "a\\..\\b",
    "incidents/.hidden", "x~type", "", "incidents/7/charts/a.png/../../../../b",
])
def test_keys_cannot_escape(tmp_path: Path, key: str) -> None:
    root = tmp_path / "artifacts"
    store = LocalArtifactStore(root)
    with pytest.raises(InvalidArtifactKey):
        store.put(key, b"x", "text/plain")
    with pytest.raises(InvalidArtifactKey):
        store.get(key)
    assert not (tmp_path / "outside").exists()


def test_a_symlink_inside_the_store_does_not_lead_out(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    root.mkdir()
    (tmp_path / "secret").mkdir()
    (root / "incidents").symlink_to(tmp_path / "secret")
    with pytest.raises(InvalidArtifactKey):
        LocalArtifactStore(root).put("incidents/x", b"x", "text/plain")
    assert not (tmp_path / "secret" / "x").exists()


def test_the_store_is_chosen_by_settings(tmp_path: Path) -> None:
    core = CoreSettings(data_dir=tmp_path)
    local = build_artifact_store(RcaSettings(), core)
    assert isinstance(local, LocalArtifactStore) and local.root == (tmp_path / "artifacts").resolve()
    plugged = build_artifact_store(RcaSettings(artifact_store="tests.test_rca_artifacts:MemoryStore"), core)
    assert isinstance(plugged, MemoryStore)
    with pytest.raises(TypeError):
        build_artifact_store(RcaSettings(artifact_store="pathlib:PurePath"), core)
