"""Images built from real packages, matched against the real advisories in ../shared/vulndb:
known-vulnerable releases are found with their CVEs and fixed versions; fixed releases are not."""

from __future__ import annotations

from pathlib import Path

from dockyard.scan.inventory import inventory_image
from dockyard.scan.layers import open_source
from dockyard.scan.matcher import Matcher
from dockyard.scan.model import Finding
from dockyard.scan.vulndb import VulnDB
from tests.scan.images import app_layers, layer_tar, write_layout
from tests.scan.test_inventory import ALPINE, DEBIAN_11

DEBIAN_12 = b'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'


def scan(layout: Path, db: VulnDB) -> list[Finding]:
    image = open_source(layout).images()[0]
    packages, distro = inventory_image(image)
    return Matcher(db).match(packages, distro)


def by_package(findings: list[Finding]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for f in findings:
        out.setdefault(f.package.name.lower(), set()).add(f.advisory_id)
    return out


def test_old_python_and_npm_releases_have_their_published_advisories(
    tmp_path: Path, site_packages: Path, node_modules: Path, vulndb: VulnDB
) -> None:
    os_release = layer_tar({"etc/os-release": DEBIAN_11})
    layout = write_layout(tmp_path / "img", [os_release, *app_layers(site_packages, node_modules)])
    findings = scan(layout, vulndb)
    found = by_package(findings)
    # Advisory ids as published by PyPA and GitHub for these exact releases.
    assert {"PYSEC-2018-28", "PYSEC-2023-74"} <= found["requests"]
    assert {"PYSEC-2019-132", "PYSEC-2019-133", "PYSEC-2020-148", "PYSEC-2021-108"} <= found["urllib3"]
    assert {"PYSEC-2019-217", "PYSEC-2021-66"} <= found["jinja2"]
    assert {"PYSEC-2020-96", "PYSEC-2021-142"} <= found["pyyaml"]
    assert {"GHSA-p6mc-m468-83gw", "GHSA-35jh-r3h4-6jhm", "GHSA-29mw-wpgm-hmr9"} <= found["lodash"]
    assert {"GHSA-vh95-rmgr-6w4m", "GHSA-xvch-5gv4-984h"} <= found["minimist"]
    # idna 3.7 is the release that fixed CVE-2024-3651; lodash 4.17.15 is above GHSA-jf85-cpcp-j695's range.
    assert "idna" not in found
    assert "GHSA-jf85-cpcp-j695" not in found["lodash"]

    requests = next(f for f in findings if f.advisory_id == "PYSEC-2018-28")
    assert "CVE-2018-18074" in requests.aliases
    assert requests.installed_version == "2.19.1" and requests.fixed_version == "2.20.0"
    assert requests.package.path.endswith("requests-2.19.1.dist-info/METADATA")
    lodash = next(f for f in findings if f.advisory_id == "GHSA-p6mc-m468-83gw" and f.package.name == "lodash")
    assert lodash.severity == "HIGH" and lodash.score is not None and lodash.fixed_version == "4.17.20"
    assert lodash.link.startswith("https://")


def test_fixed_releases_have_none(
    tmp_path: Path, site_packages_fixed: Path, node_modules_fixed: Path, vulndb: VulnDB
) -> None:
    layout = write_layout(tmp_path / "img", app_layers(site_packages_fixed, node_modules_fixed))
    image = open_source(layout).images()[0]
    packages, distro = inventory_image(image)
    names = {p.name.lower() for p in packages}
    assert {"requests", "urllib3", "jinja2", "pyyaml", "idna", "lodash", "minimist"} <= names
    assert Matcher(vulndb).match(packages, distro) == []


BULLSEYE_STATUS = b"""\
Package: libssl1.1
Status: install ok installed
Priority: optional
Section: libs
Installed-Size: 4120
Maintainer: Debian OpenSSL Team <pkg-openssl-devel@alioth-lists.debian.net>
Architecture: amd64
Multi-Arch: same
Source: openssl
Version: 1.1.1n-0+deb11u3
Depends: libc6 (>= 2.25), debconf (>= 0.5) | debconf-2.0
Description: Secure Sockets Layer toolkit - shared libraries

Package: libcurl4
Status: install ok installed
Architecture: amd64
Source: curl
Version: 7.74.0-1.3+deb11u1
Description: easy-to-use client-side URL transfer library (OpenSSL flavour)

Package: zlib1g
Status: install ok installed
Architecture: amd64
Source: zlib (1:1.2.11.dfsg-2)
Version: 1:1.2.11.dfsg-2+b1
Description: compression library - runtime

Package: libgnutls30
Status: deinstall ok config-files
Architecture: amd64
Source: gnutls28
Version: 3.7.1-5
Description: removed: only its configuration files remain
"""


def test_debian_packages_match_by_source_package_and_release(tmp_path: Path, vulndb: VulnDB) -> None:
    layout = write_layout(
        tmp_path / "img", [layer_tar({"etc/os-release": DEBIAN_11, "var/lib/dpkg/status": BULLSEYE_STATUS})]
    )
    findings = scan(layout, vulndb)
    found = by_package(findings)
    # Debian's advisories name source packages: libssl1.1 is openssl's, libcurl4 is curl's.
    assert "DSA-5343-1" in found["libssl1.1"]
    assert {"DSA-5197-1", "DSA-5330-1", "DSA-5365-1"} <= found["libcurl4"]
    dsa = next(f for f in findings if f.advisory_id == "DSA-5343-1")
    assert dsa.fixed_version == "1.1.1n-0+deb11u4"
    assert {"CVE-2022-4304", "CVE-2022-4450", "CVE-2023-0215", "CVE-2023-0286"} <= set(dsa.aliases)
    assert "libgnutls30" not in found  # removed package: config files only
    # zlib's binNMU (+b1) is compared by its source version; DSA-5218-1 fixed 1:1.2.11.dfsg-2+deb11u2.
    assert "DSA-5218-1" in found["zlib1g"]

    # The same packages in an image that says it is Debian 10 are matched against buster's advisories.
    buster = b'ID=debian\nVERSION_ID="10"\n'
    layout10 = write_layout(
        tmp_path / "img10", [layer_tar({"etc/os-release": buster, "var/lib/dpkg/status": BULLSEYE_STATUS})]
    )
    assert all(f.advisory_id.startswith("DLA-") or f.advisory_id.startswith("DSA-") for f in scan(layout10, vulndb))
    assert "DSA-5343-1" not in by_package(scan(layout10, vulndb)).get("libssl1.1", set())


def test_a_real_debian_12_system_has_no_findings_without_bookworm_advisories(tmp_path: Path, vulndb: VulnDB) -> None:
    status = Path("/var/lib/dpkg/status")
    layout = write_layout(tmp_path / "img", [layer_tar({"etc/os-release": DEBIAN_12, "var/lib/dpkg/status": status})])
    image = open_source(layout).images()[0]
    packages, distro = inventory_image(image)
    assert distro is not None and distro.version_id == "12" and len(packages) > 100
    # ../shared/vulndb ends in April 2023 with no Debian:12 entries: bullseye's must not leak onto bookworm.
    assert [f for f in Matcher(vulndb).match(packages, distro) if f.package.ecosystem == "deb"] == []


APK_INSTALLED = b"""\
C:Q1abc=
P:libcrypto1.1
V:1.1.1d-r0
A:x86_64
L:OpenSSL
o:openssl
m:Timo Teras <timo.teras@iki.fi>

C:Q1def=
P:musl
V:1.1.24-r2
A:x86_64
L:MIT
o:musl

"""


def test_alpine_packages_match_by_origin_and_branch(tmp_path: Path, vulndb: VulnDB) -> None:
    layout = write_layout(
        tmp_path / "img", [layer_tar({"etc/os-release": ALPINE, "lib/apk/db/installed": APK_INSTALLED})]
    )
    findings = scan(layout, vulndb)
    found = by_package(findings)
    assert {"ALPINE-CVE-2019-1547", "ALPINE-CVE-2019-1549", "ALPINE-CVE-2019-1551"} <= found["libcrypto1.1"]
    assert "musl" not in found
    cve = next(f for f in findings if f.advisory_id == "ALPINE-CVE-2019-1551")
    assert cve.aliases == ("CVE-2019-1551",) and cve.fixed_version == "1.1.1d-r3"

    fixed = APK_INSTALLED.replace(b"V:1.1.1d-r0", b"V:1.1.1g-r0")
    layout_fixed = write_layout(
        tmp_path / "fixed", [layer_tar({"etc/os-release": ALPINE, "lib/apk/db/installed": fixed})]
    )
    assert scan(layout_fixed, vulndb) == []


def test_results_are_cached_per_package_and_dropped_when_the_database_changes(vulndb: VulnDB) -> None:
    from dockyard.scan.matcher import Query

    m = Matcher(vulndb)
    q = Query("PyPI", "", "requests", "2.19.1")
    first = m.hits(q)
    assert m.hits(q) is first  # cached
    assert m.refresh() is False
    assert {h.advisory_id for h in first} >= {"PYSEC-2018-28"}
