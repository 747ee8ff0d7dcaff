"""The Go, Java and Ruby detectors, and `docker save` archives, on real artefacts of this machine's Debian
system: Go programs from the Debian archive, the jars of Debian's Maven repository, the gemspecs Debian's
ruby installs, and an archive written by skopeo. Expected values come from elsewhere than the detectors:
dpkg's package metadata, the Maven repository's own directory layout, RubyGems itself, the tools' output."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sysconfig
import zipfile
from pathlib import Path

import pytest

from dockyard.scan.inventory import inventory_image
from dockyard.scan.layers import DockerArchive, OciLayout, open_source
from dockyard.scan.model import GEM, GOLANG, MAVEN, PYPI, Package
from tests.conftest import missing
from tests.scan.images import Entry, layer_tar, write_layout

GO_PROGRAMS = ("umoci", "skopeo", "docker-registry")  # Debian packages of the same names (system-deps.sh)
MAVEN_REPO = Path("/usr/share/maven-repo")
# Jars of Debian's Maven repository (packages libcommons-cli-java, libslf4j-java, libwagon-http-shaded-java):
# <group as directories>/<artifact>/<version>/<file>; wagon-http's jar shades in four other artifacts.
MAVEN_JARS = (
    "commons-cli/commons-cli/*/commons-cli-*.jar",
    "org/slf4j/slf4j-api/*/slf4j-api-*.jar",
    "org/apache/maven/wagon/wagon-http/*/wagon-http-*-shaded.jar",
)
GEMSPEC_DIRS = ("/usr/lib/ruby/gems/*/specifications", "/usr/share/rubygems-integration/all/specifications")


def packages_of(layout: Path) -> list[Package]:
    return inventory_image(open_source(layout).images()[0])[0]


def _dpkg_field(package: str, field: str) -> str:
    if shutil.which("dpkg-query") is None:
        missing("dpkg-query is not installed: no Debian package metadata to compare with")
    proc = subprocess.run(
        ["dpkg-query", "-W", f"-f=${{{field}}}", package], capture_output=True, text=True, timeout=30, check=False
    )
    if proc.returncode != 0:
        missing(f"Debian package {package} is not installed")
    return proc.stdout


# --- Go ---------------------------------------------------------------------------------------------------


def test_go_program_from_debian_reports_the_go_release_it_was_built_with(tmp_path: Path) -> None:
    """The smallest of the project's Go programs, in an image: `stdlib` at the Go release dpkg says built it.

    Debian builds Go packages in GOPATH mode (dh-golang), so their build information records the main
    package's path and the build settings but no module list: the golang-* libraries in Built-Using are
    compiled in without a module version, and nothing beyond the toolchain may be reported. A non-Go ELF
    program beside it gives no Go package at all."""
    present = [Path("/usr/bin", name) for name in GO_PROGRAMS if Path("/usr/bin", name).is_file()]
    if not present:
        missing(f"none of the Go programs {', '.join(GO_PROGRAMS)} is installed (scripts/system-deps.sh)")
    program = min(present, key=lambda p: p.stat().st_size)
    built_using = _dpkg_field(program.name, "Built-Using")
    toolchain = re.search(r"\bgolang-(\d+\.\d+) \(= (?:\d+:)?([^)\s]+)\)", built_using)
    assert toolchain is not None, f"no golang-1.NN in the Built-Using of {program.name}: {built_using!r}"
    go_minor = toolchain.group(1)  # golang-1.19 -> "1.19"
    go_upstream = re.split(r"[-+~]", toolchain.group(2))[0]  # 1.19.8-2 -> "1.19.8"
    ls = Path("/usr/bin/ls").read_bytes()  # coreutils: C, not Go
    assert ls.startswith(b"\x7fELF")

    files: dict[str, Entry] = {f"usr/local/bin/{program.name}": program.read_bytes(), "usr/local/bin/ls": ls}
    found = packages_of(write_layout(tmp_path / "img", [layer_tar(files, "none")]))

    go = [p for p in found if p.path == f"usr/local/bin/{program.name}"]
    assert [(p.ecosystem, p.name) for p in go] == [(GOLANG, "stdlib")]
    stdlib = go[0]
    assert ".".join(stdlib.version.split(".")[:2]) == go_minor
    assert stdlib.version == go_upstream
    assert stdlib.purl == f"pkg:golang/stdlib@{go_upstream}"
    assert not [p for p in found if p.path == "usr/local/bin/ls"]


def test_module_mode_go_program_reports_its_dependency_modules(tmp_path: Path) -> None:
    """A Go program built with modules records each dependency module and version; kubectl reports two of
    them itself (`version --client`: its Go release, and the kustomize module read from its own build
    information by the Go runtime). kubectl is no dependency of the project: this runs where one is."""
    found_kubectl = shutil.which("kubectl")
    if found_kubectl is None:
        pytest.skip("no kubectl on this machine (optional: a real Go program built in module mode)")
    kubectl = Path(found_kubectl).resolve()
    proc = subprocess.run(
        [str(kubectl), "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=30, check=False
    )
    if proc.returncode != 0:
        pytest.skip(f"kubectl version failed: {proc.stderr[-300:]}")
    own = json.loads(proc.stdout)
    go_version = own["clientVersion"]["goVersion"]  # "go1.23.8"
    kustomize = own.get("kustomizeVersion", "")
    if not (go_version.startswith("go1.") and kustomize.startswith("v")):
        pytest.skip(f"this kubectl was not built with module information (kustomize {kustomize!r})")

    layout = write_layout(tmp_path / "img", [layer_tar({"usr/local/bin/kubectl": kubectl.read_bytes()}, "none")])
    go = {p.name: p for p in packages_of(layout) if p.ecosystem == GOLANG}

    release = re.match(r"go(\d+\.\d+(?:\.\d+)?)", go_version)
    assert release is not None and go["stdlib"].version == release.group(1)
    module = f"sigs.k8s.io/kustomize/kustomize/v{kustomize[1:].split('.')[0]}"
    assert go[module].version == kustomize
    assert go[module].purl == f"pkg:golang/{module}@{kustomize}"
    # Modules every kubectl is built with; kubernetes' own staging modules are "(devel)" and left out.
    assert {"github.com/spf13/cobra", "golang.org/x/net", "google.golang.org/protobuf"} <= set(go)
    assert not [p for p in go.values() if p.version == "(devel)" or p.name.startswith("k8s.io/kubernetes")]
    for p in go.values():
        if p.name != "stdlib":
            assert p.version.startswith("v") and p.purl == f"pkg:golang/{p.name}@{p.version.replace('+', '%2B')}"


# --- Java -------------------------------------------------------------------------------------------------


def _maven_jars() -> list[tuple[Path, str, str]]:
    """(jar, "group:artifact", version) of each jar, from where Debian's Maven repository keeps it."""
    out = []
    for pattern in MAVEN_JARS:
        jars = [j for j in MAVEN_REPO.glob(pattern) if j.parent.name[:1].isdigit()]  # not the "debian" alias
        if not jars:
            missing(f"no {pattern} in {MAVEN_REPO} (Debian packages libcommons-cli-java, libslf4j-java, "
                    "libwagon-http-shaded-java)")  # fmt: skip
        jar = jars[0]
        *group, artifact, version = jar.parent.relative_to(MAVEN_REPO).parts
        out.append((jar, f"{'.'.join(group)}:{artifact}", version))
    return out


def _pom_properties(jar: bytes) -> set[tuple[str, str]]:
    """("group:artifact", version) from every pom.properties of a jar, read here with zipfile."""
    found = set()
    with zipfile.ZipFile(io.BytesIO(jar)) as archive:
        for name in archive.namelist():
            if name.startswith("META-INF/maven/") and name.endswith("/pom.properties"):
                lines = archive.read(name).decode().splitlines()
                props = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
                found.add((f"{props['groupId']}:{props['artifactId']}", props["version"]))
    return found


def test_jars_from_debians_maven_repository(tmp_path: Path) -> None:
    """Each jar gives the artifacts its pom.properties name — its own coordinates, as the repository files it,
    and those of what it shades in — with "group:artifact" names and Maven purls."""
    jars = _maven_jars()
    files: dict[str, Entry] = {f"opt/app/lib/{jar.name}": jar.read_bytes() for jar, _, _ in jars}
    layout = write_layout(tmp_path / "img", [layer_tar(files)])
    found = [p for p in packages_of(layout) if p.ecosystem == MAVEN]

    for path, data in files.items():
        assert isinstance(data, bytes)
        assert {(p.name, p.version) for p in found if p.path == path} == _pom_properties(data)
    coordinates = {(p.name, p.version) for p in found}
    assert {(name, version) for _, name, version in jars} <= coordinates
    shaded = {p.name for p in found if p.path.endswith("-shaded.jar")}
    assert {"org.apache.httpcomponents:httpclient", "commons-codec:commons-codec"} <= shaded
    for p in found:
        group, artifact = p.name.split(":")
        assert p.purl == f"pkg:maven/{group}/{artifact}@{p.version}"


def test_nested_jars_in_a_spring_boot_style_fat_jar(tmp_path: Path) -> None:
    """Real jars stored under BOOT-INF/lib/ of an application jar are found, each at "<outer>!/<inner>";
    deleting the outer jar in a later layer removes what was found inside it."""
    jars = _maven_jars()
    fat = io.BytesIO()
    with zipfile.ZipFile(fat, "w") as archive:
        archive.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\nMain-Class: example.Main\n\n")
        archive.writestr("BOOT-INF/classes/example/Main.class", b"\xca\xfe\xba\xbe")
        for jar, _, _ in jars[:2]:  # stored, not deflated, as Spring Boot's loader needs
            archive.write(jar, f"BOOT-INF/lib/{jar.name}", compress_type=zipfile.ZIP_STORED)
    outer = "opt/app/app.jar"
    layer = layer_tar({outer: fat.getvalue()})

    found = [p for p in packages_of(write_layout(tmp_path / "img", [layer])) if p.ecosystem == MAVEN]
    assert {(p.path, p.name, p.version) for p in found} == {
        (f"{outer}!/BOOT-INF/lib/{jar.name}", name, version) for jar, name, version in jars[:2]
    }

    removed = write_layout(tmp_path / "gone", [layer, layer_tar({outer: None})])
    assert packages_of(removed) == []


# --- Ruby -------------------------------------------------------------------------------------------------


def test_gemspecs_installed_by_debians_ruby(tmp_path: Path) -> None:
    """Every gemspec Debian's ruby installs (bundled, default and Debian-packaged gems), at the same paths in
    an image: name, version and licences as RubyGems itself loads them, several licences joined with OR."""
    dirs = [d for pattern in GEMSPEC_DIRS for d in Path("/").glob(pattern.lstrip("/")) if d.is_dir()]
    specs = sorted(s for d in dirs for s in d.rglob("*.gemspec"))
    ruby = shutil.which("ruby")
    if ruby is None or not specs:
        missing("Debian's ruby is not installed (Debian package ruby)")
    load = (
        "puts JSON.generate(ARGV.map { |f| s = Gem::Specification.load(f); [f, s.name, s.version.to_s, s.licenses] })"
    )
    proc = subprocess.run(
        [str(ruby), "-rjson", "-e", load, *map(str, specs)], capture_output=True, text=True, timeout=60, check=True
    )
    expected = {
        (f.lstrip("/"), name, version, " OR ".join(lic) or None) for f, name, version, lic in json.loads(proc.stdout)
    }

    layout = write_layout(tmp_path / "img", [layer_tar({str(d).lstrip("/"): d for d in dirs})])
    found = [p for p in packages_of(layout) if p.ecosystem == GEM]

    assert {(p.path, p.name, p.version, p.licence) for p in found} == expected
    assert len(found) == len(specs) > 10
    assert any(p.licence is not None and " OR " in p.licence for p in found)  # Ruby's own: Ruby OR BSD-2-Clause
    for p in found:
        assert p.purl == f"pkg:gem/{p.name}@{p.version}"


# --- docker save archives ---------------------------------------------------------------------------------


def test_docker_archive_written_by_skopeo_gives_the_same_packages_as_the_layout(tmp_path: Path) -> None:
    """skopeo turns an OCI layout into a `docker save` archive; reading that gives the same distribution and
    packages, layer order and whiteouts included."""
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        missing("skopeo is not installed (Debian package skopeo)")
    site = Path(sysconfig.get_paths()["purelib"])  # the project's virtualenv, running these tests
    idna, packaging = (sorted(site.glob(f"{name}-*.dist-info")) for name in ("idna", "packaging"))
    if not idna or not packaging:
        missing(f"the project's virtualenv has no idna or packaging dist-info in {site}")
    base = "usr/lib/python3/dist-packages"
    layout = write_layout(
        tmp_path / "oci",
        [
            layer_tar({"etc/os-release": Path("/etc/os-release").read_bytes()}),
            layer_tar({f"{base}/{idna[0].name}": idna[0], f"{base}/{packaging[0].name}": packaging[0]}),
            layer_tar({f"{base}/{packaging[0].name}": None}),  # pip uninstall packaging
        ],
    )
    archive = tmp_path / "app.tar"
    subprocess.run(
        [str(skopeo), "copy", "--quiet", f"oci:{layout}:latest", f"docker-archive:{archive}:example/app:1"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip

    oci_source, docker_source = open_source(layout), open_source(archive)
    assert isinstance(oci_source, OciLayout) and isinstance(docker_source, DockerArchive)
    (oci_image,), (docker_image,) = oci_source.images(), docker_source.images("linux/amd64")
    assert docker_image.platform == oci_image.platform == "linux/amd64"
    assert len(docker_image.layers) == len(oci_image.layers) == 3

    from_oci, from_docker = inventory_image(oci_image), inventory_image(docker_image)
    assert from_docker == from_oci
    packages, distro = from_docker
    os_release = dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line)
    assert distro is not None and distro.id == os_release["ID"].strip('"')
    idna_version = idna[0].name.removeprefix("idna-").removesuffix(".dist-info")
    assert [(p.ecosystem, p.name, p.version) for p in packages] == [(PYPI, "idna", idna_version)]
