"""`dra-webhook certs …`: issue, package, inject and rotate the webhook's serving certificate.

The output folder looks like a `kubernetes.io/tls` Secret (tls.crt, tls.key, ca.crt) plus
ca.key, which stays with the operator so `rotate` can re-issue under the same CA (and the
caBundle in the webhook configurations stays valid). Private keys are written 0600 and
never logged; only `certs secret` prints one, to stdout, because that is what it is asked for.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import yaml

from dracore import yamlinput
from webhook.errors import GatewayError
from webhook.ops import certs
from webhook.ops.tls_objects import (
    VALIDATING_CONFIG_KIND,
    WEBHOOK_CONFIG_KINDS,
    ca_bundle_patch,
    inject_ca_bundle,
    tls_secret,
)

if TYPE_CHECKING:
    from webhook.ops.kube import KubeGateway

_DURATION = re.compile(r"^\s*(\d+)\s*([dhms])\s*$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def parse_duration(text: str) -> dt.timedelta:
    """'30d', '12h', '45m' or '90s' -> timedelta; ValueError otherwise."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration like 30d, 12h, 45m or 90s")
    return dt.timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def _duration(_ctx: click.Context, _param: click.Parameter, value: str) -> dt.timedelta:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _ips(_ctx: click.Context, _param: click.Parameter, values: Sequence[str]) -> list[str]:
    try:
        return [str(ipaddress.ip_address(v)) for v in values]
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def dns_name_problem(name: str, *, label: bool) -> str | None:
    """Why `name` is not a DNS label (RFC 1123; `label`) or DNS name (dot-separated labels,
    at most 253 characters, `*.` allowed in front), or None if it is one."""
    if label:
        if _LABEL.match(name):
            return None
        return "must be 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit"
    host = name[2:] if name.startswith("*.") else name
    if len(host) > 253 or not host or not all(_LABEL.match(part) for part in host.split(".")):
        return "must be dot-separated labels of lowercase letters, digits or '-', at most 253 characters"
    return None


def _dns_label(_ctx: click.Context, param: click.Parameter, value: str) -> str:
    problem = dns_name_problem(value, label=True)
    if problem:
        raise click.BadParameter(f"{value!r} is not a DNS label: it {problem}")
    return value


def _dns_names(
    _ctx: click.Context, _param: click.Parameter, values: Sequence[str]
) -> tuple[str, ...]:
    for value in values:
        problem = dns_name_problem(value, label=False)
        if problem:
            raise click.BadParameter(f"{value!r} is not a DNS name: it {problem}")
    return tuple(values)


def _note(message: str) -> None:
    click.echo(message, err=True)


def _load_pair(directory: Path, cert_name: str, key_name: str) -> certs.KeyPair:
    cert, key = directory / cert_name, directory / key_name
    for path in (cert, key):
        if not path.is_file():
            raise click.ClickException(
                f"{path} not found; create it with `dra-webhook certs generate --out {directory}`"
            )
    try:
        return certs.load_key_pair(cert, key)
    except ValueError as exc:
        raise click.ClickException(f"cannot read {cert} / {key}: {exc}") from None


def _describe(leaf: certs.KeyPair) -> str:
    dns, ips = certs.subject_alt_names(leaf.cert)
    until = leaf.cert.not_valid_after_utc.isoformat(timespec="seconds")
    return f"SANs {', '.join(dns + ips)}; valid until {until}"


@click.group()
def certs_group() -> None:
    """Create and rotate the webhook's serving certificate (see certs/README.md)."""


@certs_group.command()
@click.option(
    "--service", required=True, callback=_dns_label, help="Service name the API server dials."
)
@click.option("--namespace", required=True, callback=_dns_label, help="Namespace of that Service.")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder (tls.crt, tls.key, ca.crt, ca.key).",
)
@click.option(
    "--ip", "ips", multiple=True, callback=_ips, help="Extra IP SAN (repeatable), e.g. 127.0.0.1."
)
@click.option(
    "--dns", "extra_dns", multiple=True, callback=_dns_names, help="Extra DNS SAN (repeatable)."
)
@click.option("--days", default=365, show_default=True, type=click.IntRange(1, 3650))
@click.option("--ca-days", default=3650, show_default=True, type=click.IntRange(1, 36500))
@click.option("--new-ca", is_flag=True, help="Replace an existing CA in --out (re-inject after).")
def generate(
    service: str,
    namespace: str,
    out_dir: Path,
    ips: list[str],
    extra_dns: tuple[str, ...],
    days: int,
    ca_days: int,
    new_ca: bool,
) -> None:
    """Issue a CA (or reuse the one in --out) and a serving certificate for a Service."""
    if (out_dir / "ca.key").is_file() and not new_ca:
        ca = _load_pair(out_dir, "ca.crt", "ca.key")
        _note(f"reusing the CA in {out_dir} (pass --new-ca to replace it)")
    else:
        ca = certs.generate_ca(validity=dt.timedelta(days=ca_days))
        certs.write_ca_dir(out_dir, ca)
    dns = certs.service_dns_names(service, namespace) + list(extra_dns)
    leaf = certs.issue_cert(
        ca,
        f"{service}.{namespace}.svc",
        dns_names=dns,
        ip_addresses=ips,
        validity=dt.timedelta(days=days),
    )
    certs.write_tls_dir(out_dir, leaf=leaf, ca=ca)
    _note(f"wrote {out_dir}/{{tls.crt,tls.key,ca.crt,ca.key}}: {_describe(leaf)}")


def _dir_option(help_text: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    return click.option(
        "--dir",
        "directory",
        required=True,
        type=click.Path(file_okay=False, exists=True, path_type=Path),
        help=help_text,
    )


@certs_group.command()
@_dir_option("Folder written by `certs generate`.")
@click.option("--name", default="kubectl-dra-webhook-tls", show_default=True)
@click.option("--namespace", default="kubectl-dra", show_default=True)
@click.option("-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml")
def secret(directory: Path, name: str, namespace: str, output: str) -> None:
    """Print a kubernetes.io/tls Secret manifest to stdout. It contains the private key."""
    leaf = _load_pair(directory, "tls.crt", "tls.key")
    ca_path = directory / "ca.crt"
    if not ca_path.is_file():
        raise click.ClickException(f"{ca_path} not found")
    manifest = tls_secret(
        name,
        namespace=namespace,
        cert_pem=leaf.cert_pem,
        key_pem=leaf.key_pem,
        ca_pem=ca_path.read_bytes(),
    )
    _emit([manifest], output)


def _emit(documents: list[dict[str, Any]], output: str) -> None:
    if output == "json":
        for doc in documents:
            click.echo(json.dumps(doc, indent=2))
    else:
        click.echo(yaml.safe_dump_all(documents, sort_keys=False), nl=False)


def _read_manifests(path: str) -> list[Any]:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
        return [doc for doc in yamlinput.load_all(text) if doc is not None]
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror}") from None
    except yamlinput.YamlInputError as exc:
        raise click.ClickException(f"{path}: {exc}") from None


@certs_group.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Folder holding ca.crt (from `certs generate`).",
)
@click.option(
    "--ca-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The CA certificate (PEM) instead of --dir.",
)
@click.option(
    "--name",
    default="kubectl-dra",
    show_default=True,
    help="MutatingWebhookConfiguration to patch through the API.",
)
@click.option(
    "--policy-name",
    default="kubectl-dra-policy",
    show_default=True,
    help="ValidatingWebhookConfiguration (the policy check) to patch too, if it exists; "
    "'' to leave it alone.",
)
@click.option(
    "--manifest",
    help="Patch this manifest file ('-' for stdin) and print it, instead of calling the API.",
)
@click.option("--kubeconfig", type=click.Path(dir_okay=False), help="Default: $KUBECONFIG.")
@click.option("--context", help="Kubeconfig context.")
def inject(
    directory: Path | None,
    ca_file: Path | None,
    name: str,
    policy_name: str,
    manifest: str | None,
    kubeconfig: str | None,
    context: str | None,
) -> None:
    """Put the CA into the caBundle of the webhook configurations (API or manifest).

    Through the API: the MutatingWebhookConfiguration --name, and the
    ValidatingWebhookConfiguration --policy-name when it exists. With --manifest: every
    configuration of either kind in the file.
    """
    if (directory is None) == (ca_file is None):
        raise click.UsageError("give exactly one of --dir and --ca-file")
    ca_path = ca_file or (directory / "ca.crt" if directory else None)
    assert ca_path is not None
    if not ca_path.is_file():
        raise click.ClickException(f"{ca_path} not found")
    bundle = certs.ca_bundle(ca_path.read_bytes())
    if manifest is not None:
        documents = _read_manifests(manifest)
        patched_any = False
        for i, doc in enumerate(documents):
            if isinstance(doc, dict) and doc.get("kind") in WEBHOOK_CONFIG_KINDS:
                documents[i], changed = inject_ca_bundle(doc, bundle)
                patched_any = patched_any or bool(changed)
        if not patched_any:
            kinds = " or ".join(WEBHOOK_CONFIG_KINDS)
            raise click.ClickException(f"{manifest} has no {kinds} with webhooks")
        _emit(documents, "yaml")
        return
    from webhook.ops.kube import KubeGateway

    try:
        gateway = KubeGateway.from_user_kubeconfig(kubeconfig, context)
        current = gateway.get_webhook_configuration(name)
        _patch_bundle(gateway, current, bundle)
        policy = (
            gateway.find_webhook_configuration(policy_name, VALIDATING_CONFIG_KIND)
            if policy_name
            else None
        )
        if policy is not None:
            _patch_bundle(gateway, policy, bundle)
        elif policy_name:
            _note(f"{VALIDATING_CONFIG_KIND} {policy_name} not found; left alone")
    except GatewayError as exc:
        raise click.ClickException(str(exc)) from None


def _patch_bundle(gateway: KubeGateway, config: dict[str, Any], bundle: str) -> None:
    """Set `bundle` on every webhook of `config` (as read) through `gateway`, and say so."""
    kind, name = config["kind"], config["metadata"]["name"]
    ops = ca_bundle_patch(config, bundle)
    if not ops:
        raise click.ClickException(f"{kind} {name} has no webhooks")
    gateway.patch_webhook_configuration(name, ops, kind)
    _note(f"{kind} {name}: caBundle set on {len(config['webhooks'])} webhook(s)")


@certs_group.command()
@_dir_option("Folder written by `certs generate` (with ca.key).")
@click.option(
    "--before",
    default="30d",
    show_default=True,
    callback=_duration,
    help="Renew when the certificate expires within this long (30d, 12h, ...).",
)
@click.option("--days", default=365, show_default=True, type=click.IntRange(1, 3650))
@click.option("--force", is_flag=True, help="Renew even if not due.")
def rotate(directory: Path, before: dt.timedelta, days: int, force: bool) -> None:
    """Renew the serving certificate (same SANs, same CA) when it is about to expire.

    The running server picks up the new files without a restart; the caBundle stays valid.
    """
    current = _load_pair(directory, "tls.crt", "tls.key")
    if not force and not certs.expires_within(current.cert, before):
        _note(f"not due: {_describe(current)}")
        return
    ca = _load_pair(directory, "ca.crt", "ca.key")
    validity = dt.timedelta(days=days)
    if certs.expires_within(ca.cert, validity if force else before):
        until = ca.cert.not_valid_after_utc.isoformat(timespec="seconds")
        _note(f"warning: the CA itself expires {until}; the new certificate ends with it")
    if certs.expires_within(ca.cert, dt.timedelta(0)):
        raise click.ClickException(
            "the CA has expired; run `certs generate --new-ca` and `certs inject`"
        )
    leaf = certs.renew_cert(ca, current.cert, validity=validity)
    certs.write_tls_dir(directory, leaf=leaf, ca=ca)
    _note(f"renewed {directory}/tls.crt: {_describe(leaf)}")
