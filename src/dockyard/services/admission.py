"""Deploy-time verification: the answer to a Kubernetes AdmissionReview (admission.k8s.io/v1) for a
Pod or a workload that embeds a pod template (docs/admission.md). No HTTP here: api/admission.py
reads the body and writes the answer.

Every container image (containers, initContainers, ephemeralContainers) that names this registry
(`our_hosts`) is resolved tag → digest and judged by the pull gates with nobody in particular as the
caller (`Subject.caller = None`: a cluster deploys for everyone, so no exemption applies); an image of
ours that does not exist is refused; images of other registries are allowed or refused by a setting.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from dockyard.oci.digest import Digest
from dockyard.oci.errors import CodedError
from dockyard.oci.names import validate_name, validate_tag
from dockyard.services.errors import InvalidInput
from dockyard.services.gates.chain import GateChain
from dockyard.services.gates.model import Refusal, Stage, Subject
from dockyard.services.registry.manifests import ManifestService

API_VERSION = "admission.k8s.io/v1"
DEFAULT_HOST = "docker.io"
MAX_IMAGES = 256  # a pod with more containers than this is not a real pod; bounded work per review

# (API group, kind) → the path from the object to its pod spec.
POD_SPECS: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "Pod"): ("spec",),
    ("", "ReplicationController"): ("spec", "template", "spec"),
    ("apps", "Deployment"): ("spec", "template", "spec"),
    ("apps", "StatefulSet"): ("spec", "template", "spec"),
    ("apps", "DaemonSet"): ("spec", "template", "spec"),
    ("apps", "ReplicaSet"): ("spec", "template", "spec"),
    ("batch", "Job"): ("spec", "template", "spec"),
    ("batch", "CronJob"): ("spec", "jobTemplate", "spec", "template", "spec"),
}
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


@dataclass(frozen=True)
class ImageRef:
    """A container image reference as Kubernetes (and docker) read it."""

    text: str
    host: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def reference(self) -> str:
        """What to resolve: the digest when one is given (the kubelet pulls by it), else the tag."""
        return self.digest or self.tag or "latest"


def parse_image(text: str) -> ImageRef:
    """`[host[:port]/]path[:tag][@digest]`; no host means Docker Hub (`library/` for one component)."""
    if not text or len(text) > 1024 or any(c.isspace() for c in text):
        raise ValueError(f"not an image reference: {text[:100]!r}")
    rest, _, digest = text.partition("@")
    first, slash, remainder = rest.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        host, path = first.lower(), remainder
    else:
        host, path = DEFAULT_HOST, rest
    tag = None
    name, colon, maybe_tag = path.rpartition(":")
    if colon and "/" not in maybe_tag:
        path, tag = name, maybe_tag
    if host == DEFAULT_HOST and "/" not in path:
        path = f"library/{path}"
    try:
        validate_name(path)
        if tag is not None:
            validate_tag(tag)
        if digest:
            Digest.parse(digest)
    except CodedError as exc:
        raise ValueError(f"not an image reference: {text[:100]!r} ({exc.message})") from None
    return ImageRef(text, host, path, tag, digest or None)


@dataclass
class ImageVerdict:
    image: str
    digest: str | None = None
    refusals: list[str] = field(default_factory=list)

    @property
    def allowed(self) -> bool:
        return not self.refusals


def _get(obj: Any, path: Iterable[str]) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def images_of(group: str, kind: str, obj: Any) -> list[str] | None:
    """The container images of a Pod or a workload's pod template, in order and without repeats;
    None for a kind that carries no pod spec."""
    path = POD_SPECS.get((group, kind))
    if path is None:
        return None
    spec = _get(obj, path)
    if spec is None:
        return []
    if not isinstance(spec, dict):
        raise InvalidInput(f"{kind}: the pod spec is not an object")
    images: dict[str, None] = {}
    for key in CONTAINER_LISTS:
        containers = spec.get(key) or []
        if not isinstance(containers, list):
            raise InvalidInput(f"{kind}: spec.{key} is not a list")
        for c in containers:
            image = c.get("image") if isinstance(c, dict) else None
            if image is None:
                continue  # an ephemeral container's image may be empty in a template; nothing to judge
            if not isinstance(image, str):
                raise InvalidInput(f"{kind}: a container's image is not a string")
            images[image] = None
    if len(images) > MAX_IMAGES:
        raise InvalidInput(f"{kind}: more than {MAX_IMAGES} images")
    return list(images)


def registry_hosts(public_url: str | None, names: Iterable[str]) -> list[str]:
    """The names Kubernetes may give this registry's images: the host of `public_url`, and the
    configured `admission_registry_names`."""
    hosts = list(names)
    netloc = urlsplit(public_url).netloc if public_url else ""
    if netloc:
        hosts.append(netloc)
    return hosts


def _normal_host(host: str) -> str:
    host = host.strip().lower()
    for default in (":443", ":80"):
        if host.endswith(default):
            return host[: -len(default)]
    return host


class AdmissionService:
    def __init__(
        self,
        manifests: ManifestService,
        gates: GateChain,
        our_hosts: Collection[str],
        allow_other_registries: bool = True,
    ) -> None:
        self.manifests = manifests
        self.gates = gates
        self.our_hosts = frozenset(_normal_host(h) for h in our_hosts if h.strip())
        self.allow_other_registries = allow_other_registries

    def judge(self, text: str) -> ImageVerdict:
        try:
            ref = parse_image(text)
        except ValueError as exc:
            return ImageVerdict(text, refusals=[str(exc)])
        if _normal_host(ref.host) not in self.our_hosts:
            if self.allow_other_registries:
                return ImageVerdict(text)
            return ImageVerdict(text, refusals=[f"images of other registries ({ref.host}) are not allowed"])
        try:
            m = self.manifests.get(ref.repository, ref.reference)
        except CodedError:
            # Not found, or a name this registry would refuse: either way it cannot be pulled here.
            return ImageVerdict(text, refusals=[f"{ref.repository}:{ref.reference} is not in this registry"])
        subject = Subject(ref.repository, m.digest, m.media_type, m.content, tag=None, caller=None)
        refusals: list[Refusal] = self.gates.refusals(Stage.PULL, subject)
        return ImageVerdict(text, m.digest, [r.describe() for r in refusals])

    def review(self, document: Any) -> dict[str, Any]:
        """The AdmissionReview to answer with. InvalidInput for a document that is not a v1
        AdmissionReview request (the route answers 400)."""
        if not isinstance(document, dict):
            raise InvalidInput("the body is not a JSON object")
        api_version, kind = document.get("apiVersion"), document.get("kind")
        if api_version != API_VERSION or kind != "AdmissionReview":
            raise InvalidInput(f"expected apiVersion {API_VERSION} and kind AdmissionReview")
        request = document.get("request")
        if not isinstance(request, dict):
            raise InvalidInput("request: missing")
        uid = request.get("uid")
        if not isinstance(uid, str) or not uid or len(uid) > 256:
            raise InvalidInput("request.uid: missing")
        gvk = request.get("kind")
        if not isinstance(gvk, dict) or not isinstance(gvk.get("kind"), str):
            raise InvalidInput("request.kind: missing")
        group = gvk.get("group") or ""
        if not isinstance(group, str):
            raise InvalidInput("request.kind.group: not a string")
        obj = request.get("object")
        # A DELETE carries no object; nothing is being deployed.
        images = images_of(group, gvk["kind"], obj) if obj is not None else []
        verdicts = [self.judge(i) for i in images or []]
        response: dict[str, Any] = {"uid": uid, "allowed": all(v.allowed for v in verdicts)}
        if not response["allowed"]:
            refused = [v for v in verdicts if not v.allowed]
            lines = [f"{v.image}{f' ({v.digest})' if v.digest else ''}: {'; '.join(v.refusals)}" for v in refused]
            response["status"] = {
                "code": 403,
                "reason": "Forbidden",
                "message": f"dockyard refused {len(refused)} of {len(verdicts)} images: " + " | ".join(lines),
            }
        return {"apiVersion": api_version, "kind": kind, "response": response}
