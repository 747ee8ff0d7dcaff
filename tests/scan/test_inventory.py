"""Inventory of real packages in images built here: layer order, whiteouts, compression, purls."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.scan.inventory import LayerInventory, combine, inventory_image
from dockyard.scan.layers import open_source
from dockyard.scan.model import APK, DEB, NPM, PYPI
from tests.scan.images import layer_tar, write_layout

DEBIAN_11 = b'PRETTY_NAME="Debian GNU/Linux 11 (bullseye)"\nID=debian\nVERSION_ID="11"\n'
ALPINE = b'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.11.6\n'
DPKG_STATUS = Path("/var/lib/dpkg/status")  # this machine's own Debian system


def packages_of(layout: Path) -> list:  # type: ignore[type-arg]
    image = open_source(layout).images()[0]
    return inventory_image(image)[0]


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_real_python_and_npm_packages_in_any_compression(
    tmp_path: Path, site_packages: Path, node_modules: Path, compression: str
) -> None:
    layout = write_layout(
        tmp_path / "img",
        [
            layer_tar({"etc/os-release": DEBIAN_11}, compression),
            layer_tar({"usr/lib/python3/dist-packages": site_packages}, compression),
            layer_tar({"app/node_modules": node_modules}, compression),
        ],
    )
    found = {(p.ecosystem, p.name, p.version) for p in packages_of(layout)}
    assert {
        (PYPI, "requests", "2.19.1"),
        (PYPI, "urllib3", "1.24.1"),
        (PYPI, "Jinja2", "2.10"),
        (PYPI, "PyYAML", "5.3"),
        (NPM, "lodash", "4.17.15"),
        (NPM, "minimist", "1.2.0"),
    } <= found


def test_dpkg_status_of_a_real_debian_system(tmp_path: Path) -> None:
    if not DPKG_STATUS.exists():
        pytest.skip("this machine has no dpkg database")
    layout = write_layout(
        tmp_path / "img", [layer_tar({"etc/os-release": DEBIAN_11, "var/lib/dpkg/status": DPKG_STATUS.read_bytes()})]
    )
    pkgs = [p for p in packages_of(layout) if p.ecosystem == DEB]
    names = {p.name: p for p in pkgs}
    # Every installed package of this system, with its source package where it differs.
    installed = DPKG_STATUS.read_text().count("Status: install ok installed")
    assert len(pkgs) == installed > 100
    libc = names["libc6"]
    assert libc.source_name == "glibc" and libc.distro is not None and libc.distro.version_id == "11"
    assert libc.purl.startswith("pkg:deb/debian/libc6@") and "distro=debian-11" in libc.purl


def test_whiteouts_and_opaque_directories_give_the_final_filesystem(tmp_path: Path, site_packages: Path) -> None:
    requests_info = next(site_packages.glob("requests-*.dist-info"))
    yaml_info = next(site_packages.glob("[Pp]y[Yy][Aa][Mm][Ll]-*.dist-info"))
    base = "usr/lib/python3/dist-packages"
    layout = write_layout(
        tmp_path / "img",
        [
            layer_tar({f"{base}/{requests_info.name}": requests_info, f"{base}/{yaml_info.name}": yaml_info}),
            layer_tar({f"{base}/{requests_info.name}": None}),  # pip uninstall requests
            layer_tar({"opt/venv/lib": site_packages}),
            layer_tar({"opt/venv/lib/.wh..wh..opq": None}),  # the venv directory replaced, empty
        ],
    )
    found = {(p.name, p.path.split("/")[0]) for p in packages_of(layout)}
    assert found == {("PyYAML", "usr")}


def test_a_file_replaced_in_a_later_layer_replaces_its_packages(tmp_path: Path) -> None:
    old = b"Package: openssl\nStatus: install ok installed\nVersion: 1.1.1k-1\nArchitecture: amd64\n"
    new = b"Package: openssl\nStatus: install ok installed\nVersion: 1.1.1n-0+deb11u4\nArchitecture: amd64\n"
    layout = write_layout(
        tmp_path / "img",
        [
            layer_tar({"etc/os-release": DEBIAN_11, "var/lib/dpkg/status": old}),
            layer_tar({"var/lib/dpkg/status": new}),  # apt-get upgrade rewrites the database
        ],
    )
    assert [(p.name, p.version) for p in packages_of(layout)] == [("openssl", "1.1.1n-0+deb11u4")]


def test_alpine_database_with_origin_and_licence(tmp_path: Path) -> None:
    installed = (
        b"C:Q1abc=\nP:libcrypto1.1\nV:1.1.1d-r3\nA:x86_64\nL:OpenSSL\no:openssl\n\n"
        b"C:Q1def=\nP:musl\nV:1.1.24-r2\nA:x86_64\nL:MIT\no:musl\n"
    )
    layout = write_layout(tmp_path / "img", [layer_tar({"etc/os-release": ALPINE, "lib/apk/db/installed": installed})])
    pkgs = {p.name: p for p in packages_of(layout)}
    crypto = pkgs["libcrypto1.1"]
    assert crypto.ecosystem == APK and crypto.source_name == "openssl" and crypto.licence == "OpenSSL"
    assert crypto.purl == "pkg:apk/alpine/libcrypto1.1@1.1.1d-r3?arch=x86_64&distro=alpine-3.11.6"


def test_layer_inventory_round_trips_for_storage_by_digest(tmp_path: Path, site_packages: Path) -> None:
    layout = write_layout(tmp_path / "img", [layer_tar({"etc/os-release": DEBIAN_11, "srv/lib": site_packages})])
    image = open_source(layout).images()[0]
    cache: dict[str, LayerInventory] = {}
    direct, distro = inventory_image(image, cache)
    stored = {d: LayerInventory.from_json(inv.to_json()) for d, inv in cache.items()}
    again, distro2 = combine(stored[ref.digest] for ref in image.layers)
    assert again == direct and distro == distro2 and len(direct) >= 5


def test_stored_packages_keep_every_field() -> None:
    from dataclasses import fields

    from dockyard.scan.matcher import package_from_stored, package_to_stored
    from dockyard.scan.model import Distro, Package

    pkg = Package(
        DEB, "openssl", "1.1.1n-0+deb11u4", "var/lib/dpkg/status",
        "pkg:deb/debian/openssl@1.1.1n-0%2Bdeb11u4?distro=debian-11",
        source_name="openssl-src", source_version="1.1.1n", licence="OpenSSL", distro=Distro("debian", "11"),
    )  # fmt: skip
    stored = package_to_stored(pkg)
    assert set(stored) == {f.name for f in fields(Package)}
    assert package_from_stored(stored) == pkg


def _pkg_info(name: str, version: str, licence: str = "MIT") -> bytes:
    return f"Metadata-Version: 1.1\nName: {name}\nVersion: {version}\nLicense: {licence}\n".encode()


def _zipped_egg(name: str, version: str) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as egg:
        egg.writestr("EGG-INFO/PKG-INFO", _pkg_info(name, version))
        egg.writestr(f"{name}/__init__.py", b"")
    return buf.getvalue()


def test_every_python_install_form_is_found_in_any_path(tmp_path: Path) -> None:
    dist = "usr/lib/python3/dist-packages"
    site = "usr/local/lib/python2.7/site-packages"
    layout = write_layout(
        tmp_path / "img",
        [
            layer_tar(
                {
                    "etc/os-release": DEBIAN_11,
                    f"{dist}/attrs-21.0.0.dist-info/METADATA": _pkg_info("attrs", "21.0.0"),
                    f"{dist}/chardet.egg-info/PKG-INFO": _pkg_info("chardet", "3.0.4"),
                    # distutils' install_egg_info: the metadata is the .egg-info file itself
                    f"{dist}/six-1.16.0.egg-info": _pkg_info("six", "1.16.0"),
                    f"{site}/simplejson-3.0-py2.7.egg/EGG-INFO/PKG-INFO": _pkg_info("simplejson", "3.0"),
                    f"{site}/simplejson-3.0-py2.7.egg/EGG-INFO/top_level.txt": b"simplejson\n",
                    f"{site}/Paste-1.0-py2.7.egg": _zipped_egg("Paste", "1.0"),  # a zipped egg
                    "srv/app/vendor/requests-2.19.1.dist-info/METADATA": _pkg_info("requests", "2.19.1"),
                    f"{dist}/not-metadata.egg-info.txt": _pkg_info("nope", "1"),
                }
            ),
            layer_tar({f"{dist}/six-1.16.0.egg-info": None}),  # removed again: a whiteout hides the file form too
            layer_tar({f"{dist}/six-1.17.0.egg-info": _pkg_info("six", "1.17.0")}),
        ],
    )
    found = {(p.ecosystem, p.name, p.version, p.path) for p in packages_of(layout)}
    assert found == {
        (PYPI, "attrs", "21.0.0", f"{dist}/attrs-21.0.0.dist-info/METADATA"),
        (PYPI, "chardet", "3.0.4", f"{dist}/chardet.egg-info/PKG-INFO"),
        (PYPI, "six", "1.17.0", f"{dist}/six-1.17.0.egg-info"),
        (PYPI, "simplejson", "3.0", f"{site}/simplejson-3.0-py2.7.egg/EGG-INFO/PKG-INFO"),
        (PYPI, "Paste", "1.0", f"{site}/Paste-1.0-py2.7.egg"),
        (PYPI, "requests", "2.19.1", "srv/app/vendor/requests-2.19.1.dist-info/METADATA"),
    }


def _package_json(name: str, version: str) -> bytes:
    return f'{{"name": "{name}", "version": "{version}", "license": "MIT"}}'.encode()


def test_npm_packages_at_every_node_modules_depth_scoped_or_not(tmp_path: Path) -> None:
    nm = "srv/app/node_modules"
    files: dict[str, bytes | Path | None] = {
        f"{nm}/a/package.json": _package_json("a", "1.0.0"),
        f"{nm}/@s/b/package.json": _package_json("@s/b", "2.0.0"),
        f"{nm}/a/node_modules/c/package.json": _package_json("c", "3.0.0"),
        f"{nm}/a/node_modules/@s/d/package.json": _package_json("@s/d", "4.0.0"),
        f"{nm}/a/node_modules/c/node_modules/e/node_modules/@t/f/package.json": _package_json("@t/f", "5.0.0"),
        "usr/lib/node_modules/npm/package.json": _package_json("npm", "9.0.0"),  # the global prefix
        # A package's own files, not packages: a test fixture and a build folder.
        f"{nm}/a/test/fixtures/package.json": _package_json("fixture", "0.0.1"),
        f"{nm}/a/lib/package.json": _package_json("a-lib", "0.0.1"),
    }
    layout = write_layout(tmp_path / "img", [layer_tar(files)])
    found = {(p.name, p.version, p.purl) for p in packages_of(layout) if p.ecosystem == NPM}
    assert found == {
        ("a", "1.0.0", "pkg:npm/a@1.0.0"),
        ("@s/b", "2.0.0", "pkg:npm/%40s/b@2.0.0"),
        ("c", "3.0.0", "pkg:npm/c@3.0.0"),
        ("@s/d", "4.0.0", "pkg:npm/%40s/d@4.0.0"),
        ("@t/f", "5.0.0", "pkg:npm/%40t/f@5.0.0"),
        ("npm", "9.0.0", "pkg:npm/npm@9.0.0"),
    }
