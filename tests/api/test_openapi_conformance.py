"""The management API answers what its served OpenAPI document says: schemathesis generates
requests (valid and invalid) from /api/v1/openapi.json and checks every response's status, content
type, headers and body against the document, and that nothing answers 5xx."""

from __future__ import annotations

import re
import time

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi._hypothesis import can_negate_path_parameters

from tests.api.conftest import ADMIN, Registry
from tests.support.trust_material import ca_pem, ec_pem

EXAMPLES = 8  # per operation and mode: bounded, and derandomized so CI cannot fail by chance


def _expiry_in_the_future(case: schemathesis.Case) -> schemathesis.Case:
    """The one rule the document cannot state: an expiry (robots, tokens) must lie in the future,
    which no JSON Schema bound can say. Valid requests get a future expiry; the refusal of a past
    one is tested where the rule lives."""
    if isinstance(case.body, dict) and isinstance(case.body.get("expires_at"), int | float):
        case.body["expires_at"] = time.time() + 86400 + (case.body["expires_at"] % 1000)
    return case


def _exposure_selector(case: schemathesis.Case) -> schemathesis.Case:
    """The rule of GET /exposure a document cannot state: exactly one of `advisory` and `package`
    (`version` only with `package`), and `since` before `until`. Valid requests get one; the refusals
    are tested where the rule lives (tests/scan/test_exposure.py)."""
    if case.operation.path != "/exposure":
        return case
    q = dict(case.query or {})
    if "advisory" in q:
        q.pop("package", None)
        q.pop("version", None)
    elif "package" not in q:
        q.pop("version", None)
        q["advisory"] = "CVE-2018-18074"
    since, until = q.get("since"), q.get("until")
    if isinstance(since, int | float) and isinstance(until, int | float) and since >= until:
        q.pop("until")
    case.query = q
    return case


def _valid_trust_material(case: schemathesis.Case) -> schemathesis.Case:
    """Likewise: a public key, certificate or trusted identity must be one that parses (PEM of an
    accepted algorithm, an X.509 subject), which no pattern can say. Valid requests get real
    material; refusing bad material is tested in tests/trust/test_trust_api.py."""
    if isinstance(case.body, dict):
        if isinstance(case.body.get("public_key"), str):
            case.body["public_key"] = ec_pem()
        if isinstance(case.body.get("certificate"), str):
            case.body["certificate"] = ca_pem()
        if isinstance(case.body.get("identities"), list):
            case.body["identities"] = ["x509.subject: C=US, O=Acme"][: len(case.body["identities"])]
    return case


def _nothing_to_negate(operation: schemathesis.APIOperation) -> bool:
    """No invalid request can be made: no body, no query, header or cookie parameter, and path
    parameters that schemathesis itself says it cannot negate (a path value is always a string on the
    wire). Hypothesis would reject ~460 draws (1-2 s each operation) before giving up as Unsatisfiable;
    this is that same outcome, decided by schemathesis' own rule, without the draws."""
    return (
        not operation.body
        and not (len(operation.query) or len(operation.headers) or len(operation.cookies))
        and len(operation.path_parameters) > 0
        and not can_negate_path_parameters(operation)
    )


def _failures(registry: Registry, mode: GenerationMode) -> list[str]:
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", registry.http.app)
    found: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if mode.is_negative and _nothing_to_negate(operation):
            continue

        strategy = operation.as_strategy(generation_mode=mode)
        if mode.is_positive:
            strategy = strategy.map(_expiry_in_the_future).map(_exposure_selector).map(_valid_trust_material)

        @given(case=strategy)
        @settings(
            max_examples=EXAMPLES,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate],
            report_multiple_bugs=False,
        )
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=dict(ADMIN))  # a copy: schemathesis adds its headers to it

        try:
            check()
        except (AssertionError, FailureGroup) as exc:  # schemathesis' failures; anything else is a bug here
            found.append(f"{operation.label}: {exc}")
        except Unsatisfiable:  # no parameters and no body: there is no invalid request to make
            assert mode.is_negative
    return found


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_management_api_conforms_to_its_openapi_document(registry: Registry, mode: GenerationMode) -> None:
    failures = _failures(registry, mode)
    assert not failures, f"{len(failures)} operations disagree with the document:\n" + "\n\n".join(failures)


def test_every_undocumented_method_is_405_with_the_documented_allow(registry: Registry) -> None:
    doc = registry.request("GET", "/api/v1/openapi.json").json()
    checked = 0
    for template, item in doc["paths"].items():
        documented = {m.upper() for m in item}
        path = re.sub(r"\{[^}]+\}", "x", template)
        for method in sorted({"GET", "PUT", "POST", "DELETE", "PATCH"} - documented):
            r = registry.request(method, "/api/v1" + path)
            assert r.status_code == 405, (method, path, r.text)
            assert r.headers["content-type"] == "application/problem+json"
            assert r.headers["allow"] == ", ".join(sorted(documented)), (method, path)
            checked += 1
    assert checked > 40  # the document has that many method/path pairs it does not serve
