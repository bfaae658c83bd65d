"""`dra-webhook certs …` through click's CliRunner: files, stdout vs stderr, user errors."""

from __future__ import annotations

import base64
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from webhook.cli import cli
from webhook.ops import certs


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("certs")
    result = CliRunner().invoke(
        cli,
        [
            "certs",
            "generate",
            "--service",
            "wh",
            "--namespace",
            "ns",
            "--out",
            str(out),
            "--ip",
            "127.0.0.1",
            "--dns",
            "wh.example",
        ],
    )
    assert result.exit_code == 0, result.output
    return out


def test_generate_writes_secret_shaped_files_with_private_keys_0600(generated: Path) -> None:
    names = {p.name: stat.S_IMODE(p.stat().st_mode) for p in generated.iterdir()}
    assert set(names) == {"tls.crt", "tls.key", "ca.crt", "ca.key"}
    assert names["tls.key"] == 0o600 and names["ca.key"] == 0o600
    leaf = certs.load_key_pair(generated / "tls.crt", generated / "tls.key")
    dns, ips = certs.subject_alt_names(leaf.cert)
    assert dns == [*certs.service_dns_names("wh", "ns"), "wh.example"]
    assert ips == ["127.0.0.1"]


def test_generate_prints_nothing_secret(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["certs", "generate", "--service", "a", "--namespace", "b", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "PRIVATE KEY" not in result.stderr and "valid until" in result.stderr


def test_generate_reuses_the_ca_unless_told(tmp_path: Path) -> None:
    args = ["certs", "generate", "--service", "a", "--namespace", "b", "--out", str(tmp_path)]
    CliRunner().invoke(cli, args)
    first = (tmp_path / "ca.crt").read_bytes()
    second = CliRunner().invoke(cli, args)
    assert "reusing the CA" in second.stderr
    assert (tmp_path / "ca.crt").read_bytes() == first
    CliRunner().invoke(cli, [*args, "--new-ca"])
    assert (tmp_path / "ca.crt").read_bytes() != first


def test_secret_prints_a_tls_secret_to_stdout_only(generated: Path) -> None:
    result = CliRunner().invoke(
        cli, ["certs", "secret", "--dir", str(generated), "--namespace", "kubectl-dra"]
    )
    assert result.exit_code == 0
    secret = yaml.safe_load(result.stdout)
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"]["namespace"] == "kubectl-dra"
    assert base64.b64decode(secret["data"]["tls.key"]) == (generated / "tls.key").read_bytes()
    assert result.stderr == ""


def test_inject_manifest_prints_every_document_with_the_bundle(
    generated: Path, tmp_path: Path
) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\n"
        "apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\n"
        "metadata: {name: kubectl-dra}\nwebhooks:\n- name: a.kubectl-dra.io\n"
        "  clientConfig: {service: {name: wh, namespace: ns}}\n---\n"
        "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\n"
        "metadata: {name: kubectl-dra-policy}\nwebhooks:\n- name: policy.kubectl-dra.io\n"
        "  clientConfig: {service: {name: wh, namespace: ns}}\n"
    )
    result = CliRunner().invoke(
        cli, ["certs", "inject", "--dir", str(generated), "--manifest", str(manifest)]
    )
    assert result.exit_code == 0, result.output
    docs = list(yaml.safe_load_all(result.stdout))
    assert [d["kind"] for d in docs] == [
        "Namespace",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ]
    for config in docs[1:]:
        bundle = config["webhooks"][0]["clientConfig"]["caBundle"]
        assert base64.b64decode(bundle) == (generated / "ca.crt").read_bytes()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ["generate", "--service", "a", "--namespace", "b", "--out", "{tmp}", "--ip", "1.2.3"],
            2,
            "Invalid value for '--ip'",
        ),
        (["rotate", "--dir", "{tmp}", "--before", "3w"], 2, "not a duration"),
        (["rotate", "--dir", "{tmp}"], 1, "tls.crt not found; create it with"),
        (["secret", "--dir", "{tmp}"], 1, "tls.crt not found"),
        (["inject", "--manifest", "x.yaml"], 2, "exactly one of --dir and --ca-file"),
        (["inject", "--dir", "{gen}", "--manifest", "{tmp}/none.yaml"], 1, "cannot read"),
        (
            ["inject", "--dir", "{gen}", "--manifest", "{gen}/ca.crt"],
            1,
            "has no MutatingWebhookConfiguration",
        ),
        (
            ["inject", "--dir", "{gen}", "--kubeconfig", "{tmp}/nokubeconfig"],
            1,
            "cannot load kubeconfig",
        ),
    ],
)
def test_user_errors_are_one_line_without_traceback(
    generated: Path, tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    argv = ["certs"] + [a.format(tmp=tmp_path, gen=generated) for a in args]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == code, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)


def test_rotate_renews_only_when_due_and_keeps_ca_and_sans(tmp_path: Path) -> None:
    gen = ["certs", "generate", "--service", "wh", "--namespace", "ns", "--out", str(tmp_path)]
    CliRunner().invoke(cli, [*gen, "--days", "10", "--ip", "10.0.0.1"])
    before = certs.load_key_pair(tmp_path / "tls.crt", tmp_path / "tls.key")
    ca_before = (tmp_path / "ca.crt").read_bytes()

    not_due = CliRunner().invoke(cli, ["certs", "rotate", "--dir", str(tmp_path), "--before", "5d"])
    assert not_due.exit_code == 0 and "not due" in not_due.stderr
    assert (tmp_path / "tls.crt").read_bytes() == before.cert_pem

    due = CliRunner().invoke(cli, ["certs", "rotate", "--dir", str(tmp_path)])  # 30d window
    assert due.exit_code == 0 and "renewed" in due.stderr
    after = certs.load_key_pair(tmp_path / "tls.crt", tmp_path / "tls.key")
    assert after.cert.serial_number != before.cert.serial_number
    assert certs.subject_alt_names(after.cert) == certs.subject_alt_names(before.cert)
    assert after.cert.not_valid_after_utc > before.cert.not_valid_after_utc
    assert (tmp_path / "ca.crt").read_bytes() == ca_before
    ca = certs.load_key_pair(tmp_path / "ca.crt", tmp_path / "ca.key")
    after.cert.verify_directly_issued_by(ca.cert)


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--service", "Web_Hook"),  # upper case and '_'
        ("--service", "-wh"),  # starts with '-'
        ("--service", "a" * 64),  # a label is at most 63 characters
        ("--namespace", "ns.with.dots"),  # a namespace is one label
        ("--namespace", ""),
        ("--dns", "bad..name"),  # an empty label
        ("--dns", "wh.example\nevil"),  # a newline would end up in the certificate's SAN
        ("--dns", ".".join(["x" * 60] * 5)),  # 304 characters: over 253
    ],
)
def test_generate_refuses_names_that_are_not_dns_names_before_writing(
    flag: str, value: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = {"--service": "wh", "--namespace": "ns", "--dns": "wh.example"}
    args[flag] = value
    argv = ["certs", "generate", "--out", str(out)]
    for key, item in args.items():
        argv += [key, item]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 2
    assert f"Invalid value for '{flag}'" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()  # nothing written


def test_generate_accepts_a_wildcard_dns_name(tmp_path: Path) -> None:
    argv = ["certs", "generate", "--service", "wh", "--namespace", "ns", "--out", str(tmp_path)]
    result = CliRunner().invoke(cli, [*argv, "--dns", "*.wh.example"])
    assert result.exit_code == 0, result.output
    dns, _ = certs.subject_alt_names(
        certs.load_key_pair(tmp_path / "tls.crt", tmp_path / "tls.key").cert
    )
    assert "*.wh.example" in dns


class _Gateway:
    """Stands in for KubeGateway: the configurations it holds, and the patches it was sent."""

    def __init__(self, configs: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.configs = configs
        self.patched: list[tuple[str, str, list[dict[str, Any]]]] = []

    def get_webhook_configuration(
        self, name: str, kind: str = "MutatingWebhookConfiguration"
    ) -> dict[str, Any]:
        return self.configs[kind, name]

    def find_webhook_configuration(self, name: str, kind: str) -> dict[str, Any] | None:
        return self.configs.get((kind, name))

    def patch_webhook_configuration(
        self, name: str, ops: list[dict[str, Any]], kind: str = "MutatingWebhookConfiguration"
    ) -> None:
        self.patched.append((kind, name, ops))


def _live(kind: str, name: str) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"name": name}, "webhooks": [{"name": f"{name}.io"}]}


@pytest.mark.parametrize("with_policy_check", [True, False])
def test_inject_through_the_api_patches_the_policy_check_too_when_it_exists(
    generated: Path, monkeypatch: pytest.MonkeyPatch, with_policy_check: bool
) -> None:
    from webhook.ops import kube

    configs = {
        ("MutatingWebhookConfiguration", "kubectl-dra"): _live(
            "MutatingWebhookConfiguration", "kubectl-dra"
        )
    }
    if with_policy_check:
        configs["ValidatingWebhookConfiguration", "kubectl-dra-policy"] = _live(
            "ValidatingWebhookConfiguration", "kubectl-dra-policy"
        )
    gateway = _Gateway(configs)
    monkeypatch.setattr(kube.KubeGateway, "from_user_kubeconfig", lambda *_: gateway)
    result = CliRunner().invoke(cli, ["certs", "inject", "--dir", str(generated)])
    assert result.exit_code == 0, result.output
    patched = [(kind, name) for kind, name, _ in gateway.patched]
    expected = [("MutatingWebhookConfiguration", "kubectl-dra")]
    if with_policy_check:
        expected.append(("ValidatingWebhookConfiguration", "kubectl-dra-policy"))
        assert "ValidatingWebhookConfiguration kubectl-dra-policy: caBundle set" in result.stderr
    else:
        assert "ValidatingWebhookConfiguration kubectl-dra-policy not found" in result.stderr
    assert patched == expected
    bundle = base64.b64encode((generated / "ca.crt").read_bytes()).decode()
    for _kind, _name, ops in gateway.patched:
        assert ops[-1] == {
            "op": "add",
            "path": "/webhooks/0/clientConfig/caBundle",
            "value": bundle,
        }
