"""The staleness guard: a compiled policy acts only while the policy ConfigMap is unchanged.

The GPUPolicy lives in a ConfigMap that an admin edits and the webhook reloads. The compiled
admission policies are a snapshot of it, applied by an installer. Each one therefore reads the
ConfigMap as its parameter (`paramKind` v1 ConfigMap, the binding's `paramRef`) and matches only
while the ConfigMap's policy text equals, byte for byte, the text it was compiled from. After an
edit every compiled policy steps aside by itself: pods keep their legacy resource and reach the
webhook, which serves them under the new policy, until the installer compiles again. A missing
ConfigMap (`parameterNotFoundAction: Allow`) also leaves the webhook in charge.

The text enters the expression only as a literal made by `cel.string_literal`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from dracore import cel, yamlinput
from dracore.names import is_dns_label, is_dns_subdomain
from dracore.policy import CONFIGMAP_KEY

GUARD_CONDITION: Final = "compiled-from-the-current-policy"
PARAM_KIND: Final = {"apiVersion": "v1", "kind": "ConfigMap"}
# What the API server accepts as a ConfigMap key.
_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")


@dataclass(frozen=True, slots=True)
class PolicySource:
    """The ConfigMap key an admin edits, and the exact text the policies were compiled from."""

    namespace: str
    name: str
    key: str
    text: str

    @property
    def reference(self) -> str:
        return f"{self.namespace}/{self.name}:{self.key}"

    def param_ref(self) -> dict[str, Any]:
        """A binding's paramRef: without the ConfigMap the policy is skipped (Allow), so the
        webhook serves the pods instead of the API server refusing them."""
        return {
            "name": self.name,
            "namespace": self.namespace,
            "parameterNotFoundAction": "Allow",
        }

    def condition(self) -> dict[str, str]:
        """The matchCondition: the ConfigMap still holds the text compiled from."""
        key = cel.string_literal(self.key)
        return {
            "name": GUARD_CONDITION,
            "expression": f"has(params.data) && {key} in params.data && "
            f"params.data[{key}] == {cel.string_literal(self.text)}",
        }


class ConfigMapReferenceError(ValueError):
    """Not a NAMESPACE/NAME[:KEY] reference to a ConfigMap key."""


def parse_configmap_reference(value: str) -> tuple[str, str, str]:
    """`NAMESPACE/NAME[:KEY]` -> (namespace, name, key); ConfigMapReferenceError saying what
    is wrong."""
    where, _, key = value.partition(":")
    namespace, slash, name = where.partition("/")
    if not slash:
        raise ConfigMapReferenceError(
            f"{value!r} is not NAMESPACE/NAME[:KEY], e.g. kubectl-dra/kubectl-dra-policy"
        )
    if not is_dns_label(namespace):
        raise ConfigMapReferenceError(f"{namespace!r} is not a namespace name")
    if not is_dns_subdomain(name):
        raise ConfigMapReferenceError(f"{name!r} is not a ConfigMap name")
    key = key or CONFIGMAP_KEY
    if not _KEY.match(key):
        raise ConfigMapReferenceError(
            f"{key!r} is not a ConfigMap key (letters, digits, '-', '_', '.')"
        )
    return namespace, name, key


def read_policy_source(path: str | Path, reference: str) -> PolicySource:
    """The ConfigMap `reference` names and the text the policy file puts there;
    ConfigMapReferenceError for the reference, ValueError for the file."""
    namespace, name, key = parse_configmap_reference(reference)
    return PolicySource(namespace, name, key, read_policy_text(path, key))


def read_policy_text(path: str | Path, key: str) -> str:
    """The exact text a policy file puts in the ConfigMap under `key` (no newline translation:
    the guard compares it character for character); ValueError naming the file otherwise."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{path}: not UTF-8 text (byte {exc.start}); save the policy as UTF-8 YAML"
        ) from None
    try:
        return policy_text(text, key)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def policy_text(file_text: str, key: str) -> str:
    """The text the ConfigMap holds for a policy file: the file itself, or, for a ConfigMap
    manifest, its `data[key]` (what `kubectl apply` of that file stores). ValueError when a
    ConfigMap manifest has no such key."""
    try:
        document = yamlinput.load(file_text)
    except yamlinput.YamlInputError:
        return file_text  # the policy loader reports it
    if not (isinstance(document, dict) and document.get("kind") == "ConfigMap"):
        return file_text
    data = document.get("data")
    if not (isinstance(data, dict) and isinstance(data.get(key), str)):
        raise ValueError(f"the ConfigMap manifest has no text under data.{key}")
    return str(data[key])
