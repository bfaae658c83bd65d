"""Is an object that already exists under the name we need the object the pod needs?

The webhook finds the ResourceClaimTemplate it would create (or the shared ResourceClaim a pod
names) already there when another replica made it a moment ago, when a pod of the same shape
came before, or when someone else created an object of that name first: a "squat", for instance
a claim with a selector no device matches, or one holding more devices than the policy allows.
A name proves nothing, so the content is compared before a pod is pointed at it:

- a template must have exactly the claim spec we would write (its name is a hash of that spec);
- a shared claim must, for each request we would write, have a request of the same DeviceClass,
  asking for at least as many devices, with the same selectors, options and driver config, and
  nothing else: no extra request, no constraints, and no more devices in all than the policy's
  maxGPUsPerPod (every container of the pod sees the whole claim).

Each function returns None when the object fits, else one phrase naming the difference.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from dracore import dra
from dracore.errors import shown


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _unset(value: Any) -> bool:
    """None, false and empty lists or objects: what the API server leaves out when serving."""
    return value is None or value is False or (isinstance(value, list | dict) and not value)


def _normalized_exactly(exactly: Mapping[str, Any]) -> dict[str, Any]:
    """An `exactly` request with the API server's defaults written out, so both sides compare."""
    result = {k: v for k, v in exactly.items() if not _unset(v)}
    result.setdefault("allocationMode", "ExactCount")
    if result["allocationMode"] == "ExactCount":
        result.setdefault("count", 1)
    return result


def _normalized_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    devices = _mapping(spec.get("devices"))
    requests = []
    for request in devices.get("requests") or []:
        request = dict(_mapping(request))
        if isinstance(request.get("exactly"), Mapping):
            request["exactly"] = _normalized_exactly(request["exactly"])
        if isinstance(request.get("firstAvailable"), list):
            request["firstAvailable"] = [
                _normalized_exactly(_mapping(sub)) for sub in request["firstAvailable"]
            ]
        requests.append(request)
    normalized: dict[str, Any] = {"requests": requests}
    for key in ("constraints", "config"):
        if devices.get(key):
            normalized[key] = devices[key]
    return {"devices": normalized}


def template_difference(existing: Mapping[str, Any], wanted: Mapping[str, Any]) -> str | None:
    """Why an existing ResourceClaimTemplate is not the one `wanted` describes, or None."""
    have = _normalized_spec(_mapping(_mapping(existing.get("spec")).get("spec")))
    need = _normalized_spec(_mapping(_mapping(wanted.get("spec")).get("spec")))
    if have == need:
        return None
    have_requests, need_requests = have["devices"]["requests"], need["devices"]["requests"]
    if len(have_requests) != len(need_requests):
        return f"has {len(have_requests)} request(s), this pod needs {len(need_requests)}"
    for mine, theirs in zip(need_requests, have_requests, strict=True):
        if mine != theirs:
            return (
                f"request {shown(theirs.get('name'))} is {shown(_canonical(theirs), 160)}, "
                f"this pod needs {shown(_canonical(mine), 160)}"
            )
    return f"its constraints or config differ from what this pod needs ({shown(_canonical(have['devices']), 160)})"


def _configs_for(devices: Mapping[str, Any], request: str) -> list[str]:
    """The driver configs that apply to one request (an entry without `requests` applies to all)."""
    found = []
    for config in devices.get("config") or []:
        config = _mapping(config)
        applies_to = config.get("requests") or []
        if not applies_to or request in applies_to:
            found.append(_canonical({k: v for k, v in config.items() if k != "requests"}))
    return sorted(found)


def _options(exactly: Mapping[str, Any]) -> dict[str, Any]:
    """What a request asks for besides its class and count: selectors, mode, admin access, ..."""
    return {k: v for k, v in _normalized_exactly(exactly).items() if k not in ("count", "name")}


def shared_claim_difference(
    existing: Mapping[str, Any], wanted: Mapping[str, Any], *, max_devices: int | None = None
) -> str | None:
    """Why an existing ResourceClaim cannot serve the pod that `wanted` was built for, or None.

    Phrases start after the claim's name: "ResourceClaim NAME <phrase>".
    """
    have_devices = _mapping(_mapping(existing.get("spec")).get("devices"))
    need_devices = _mapping(_mapping(wanted.get("spec")).get("devices"))
    have = dra.claim_requests(existing)
    exact = {i: _mapping(r.get("exactly")) for i, r in enumerate(have) if "exactly" in r}
    offered = sorted(
        {str(e.get("deviceClassName")) for e in exact.values()}
        | {
            str(_mapping(s).get("deviceClassName"))
            for r in have
            for s in r.get("firstAvailable") or []
        }
    )
    used: set[int] = set()
    for request in dra.claim_requests(wanted):
        mine = _mapping(request.get("exactly"))
        device_class, need = mine.get("deviceClassName"), dra.exact_device_count(mine) or 0
        candidates = [i for i, e in exact.items() if e.get("deviceClassName") == device_class]
        if not candidates and device_class in offered:
            return (
                f"offers class {device_class} only as a firstAvailable alternative, which may "
                "be allocated another class"
            )
        if not candidates:
            return f"offers devices of class {', '.join(offered) or 'nothing'}, not {device_class}"
        # The request of the same name if there is one, else the first of that class.
        index = next((i for i in candidates if have[i].get("name") == request.get("name")), None)
        index = (
            next((i for i in candidates if i not in used), candidates[0])
            if index is None
            else index
        )
        used.add(index)
        theirs, their_name = exact[index], shown(have[index].get("name"))
        got = dra.exact_device_count(theirs)
        if got is not None and got < need:
            return f"holds {got} device(s) of class {device_class}; this pod needs {need}"
        if _options(theirs) != _options(mine):
            return (
                f"request {their_name} asks for {shown(_canonical(_options(theirs)), 200)}, "
                f"this pod needs {shown(_canonical(_options(mine)), 200)}"
            )
        their_config = _configs_for(have_devices, str(have[index].get("name")))
        my_config = _configs_for(need_devices, str(request.get("name")))
        if their_config != my_config:
            return (
                f"request {their_name} has driver config {shown(' '.join(their_config) or 'none', 200)}, "
                f"this pod needs {shown(' '.join(my_config) or 'none', 200)}"
            )
    extra = [shown(r.get("name")) for i, r in enumerate(have) if i not in used]
    if extra:
        return f"also has request(s) {', '.join(extra)}, which this pod does not ask for"
    if have_devices.get("constraints"):
        return "has device constraints, which this pod does not ask for"
    total = dra.claim_device_count(existing)
    if max_devices is not None and (total is None or total > max_devices):
        held = "every matching device" if total is None else f"{total} devices"
        return f"can hold {held}; policy maxGPUsPerPod is {max_devices}"
    return None
