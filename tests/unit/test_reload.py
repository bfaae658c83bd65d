"""reload.py without a server: change detection, last-good policy, certificate pairs, watcher."""

from __future__ import annotations

import logging
import os
import ssl
from pathlib import Path

import pytest

from dracore.errors import PolicyError
from webhook.ops import certs
from webhook.serving.reload import CertReloader, PolicyReloader, Watcher
from webhook.serving.tls_context import server_context

GOOD = "apiVersion: kubectl-dra.io/v1alpha1\nkind: GPUPolicy\nspec:\n  defaults:\n    maxGPUsPerPod: {n}\n"
BAD = GOOD.format(n=2) + "    podSharing: Sometimes\n"


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def test_good_edit_replaces_the_policy(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD.format(n=2))
    reloader = PolicyReloader(path)
    assert reloader().defaults.max_gpus_per_pod == 2
    assert reloader.check() is False  # nothing changed
    _write(path, GOOD.format(n=3))
    assert reloader.check() is True
    assert reloader().defaults.max_gpus_per_pod == 3
    assert reloader.status()["ok"] is True


def test_bad_edit_keeps_the_last_good_policy_and_reports_the_field(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD.format(n=2))
    reloader = PolicyReloader(path)
    good = reloader()
    _write(path, BAD)
    with caplog.at_level(logging.ERROR, logger="webhook.serving.reload"):
        assert reloader.check() is False
    assert reloader() is good
    status = reloader.status()
    assert status["ok"] is False and status["digest"] == good.digest
    assert "spec.defaults.podSharing" in status["error"]
    assert reloader.failing
    assert any("spec.defaults.podSharing" in r.getMessage() for r in caplog.records)
    _write(path, GOOD.format(n=5))  # fixed
    assert reloader.check() is True and not reloader.failing
    assert reloader().defaults.max_gpus_per_pod == 5


def test_same_content_with_a_new_mtime_is_not_a_reload(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD.format(n=2))
    reloader = PolicyReloader(path)
    before = reloader()
    os.utime(path, ns=(1, 1))
    assert reloader.check() is False
    assert reloader() is before


def test_kubelet_symlink_swap_is_seen(tmp_path: Path) -> None:
    for gen, n in (("..1", 2), ("..2", 7)):
        (tmp_path / gen).mkdir()
        (tmp_path / gen / "policy.yaml").write_text(GOOD.format(n=n))
    (tmp_path / "..data").symlink_to("..1")
    (tmp_path / "policy.yaml").symlink_to("..data/policy.yaml")
    reloader = PolicyReloader(tmp_path / "policy.yaml")
    assert reloader().defaults.max_gpus_per_pod == 2
    (tmp_path / "..data_tmp").symlink_to("..2")
    (tmp_path / "..data_tmp").replace(tmp_path / "..data")
    assert reloader.check() is True
    assert reloader().defaults.max_gpus_per_pod == 7


def test_deleted_file_is_a_failure_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD.format(n=2))
    reloader = PolicyReloader(path)
    path.unlink()
    assert reloader.check() is False
    assert "cannot read" in reloader.status()["error"]
    assert reloader().defaults.max_gpus_per_pod == 2


def test_invalid_policy_at_start_raises(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(BAD)
    with pytest.raises(PolicyError, match=r"spec\.defaults\.podSharing"):
        PolicyReloader(path)
    with pytest.raises(PolicyError, match="cannot read"):
        PolicyReloader(tmp_path / "missing.yaml")


@pytest.fixture(scope="module")
def ca() -> certs.KeyPair:
    return certs.generate_ca()


def _leaf_dir(ca: certs.KeyPair, path: Path) -> certs.KeyPair:
    leaf = certs.issue_cert(ca, "x", dns_names=["x"])
    certs.write_tls_dir(path, leaf=leaf, ca=ca)
    return leaf


def test_certificate_reload_builds_a_new_context(ca: certs.KeyPair, tmp_path: Path) -> None:
    first = _leaf_dir(ca, tmp_path)
    reloader = CertReloader(tmp_path)
    context = reloader.context()
    assert reloader.expiry_unix == first.cert.not_valid_after_utc.timestamp()
    assert reloader.check() is False and reloader.context() is context
    second = _leaf_dir(ca, tmp_path)
    assert reloader.check() is True
    assert reloader.context() is not context
    assert reloader.status()["notAfter"] == second.cert.not_valid_after_utc.isoformat(
        timespec="seconds"
    )


def test_mismatched_pair_keeps_the_old_context_and_retries(
    ca: certs.KeyPair, tmp_path: Path
) -> None:
    _leaf_dir(ca, tmp_path)
    reloader = CertReloader(tmp_path)
    context = reloader.context()
    new = certs.issue_cert(ca, "y", dns_names=["y"])
    certs.write_private(tmp_path / "tls.key", new.key_pem)
    assert reloader.check() is False
    assert reloader.context() is context
    assert reloader.status()["ok"] is False
    assert reloader.check() is False  # retried, still broken
    certs.write_public(tmp_path / "tls.crt", new.cert_pem)
    assert reloader.check() is True
    assert reloader.status()["ok"] is True


def test_server_context_refuses_anything_below_tls_1_2(ca: certs.KeyPair, tmp_path: Path) -> None:
    _leaf_dir(ca, tmp_path)
    context = server_context(tmp_path / "tls.crt", tmp_path / "tls.key")
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


class _Exploding:
    name = "boom"
    calls = 0

    def check(self) -> bool:
        self.calls += 1
        raise RuntimeError("bug")

    def status(self) -> dict[str, object]:
        return {"ok": True}


def test_watcher_survives_a_failing_check(caplog: pytest.LogCaptureFixture) -> None:
    item = _Exploding()
    watcher = Watcher([item, item], interval=0.01)
    with caplog.at_level(logging.ERROR, logger="webhook.serving.reload"):
        watcher.poll()
    assert item.calls == 2
    assert "checking boom for changes failed" in caplog.text


def test_certificate_in_a_kubelet_secret_volume_is_reloaded_on_the_symlink_swap(
    ca: certs.KeyPair, tmp_path: Path
) -> None:
    """tls.crt -> ..data/tls.crt, tls.key -> ..data/tls.key; the kubelet swaps ..data at once."""
    first, second = tmp_path / "..gen1", tmp_path / "..gen2"
    _leaf_dir(ca, first)
    leaf = _leaf_dir(ca, second)
    (tmp_path / "..data").symlink_to(first.name)
    for name in ("tls.crt", "tls.key"):
        (tmp_path / name).symlink_to(f"..data/{name}")
    reloader = CertReloader(tmp_path)
    context = reloader.context()
    assert reloader.check() is False
    (tmp_path / "..data_tmp").symlink_to(second.name)
    (tmp_path / "..data_tmp").replace(tmp_path / "..data")
    assert reloader.check() is True
    assert reloader.context() is not context
    assert reloader.expiry_unix == leaf.cert.not_valid_after_utc.timestamp()
