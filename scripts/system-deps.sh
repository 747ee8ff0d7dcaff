#!/usr/bin/env bash
# Install the Debian packages the test suite drives for real (clients, reference registry,
# web server for benchmarks). Only runs apt-get when something is missing.
set -euo pipefail
# slapd + ldap-utils: the LDAP tests start their own OpenLDAP server on a loopback port.
# chromium: the web UI's browser tests (Playwright drives it; it cannot download its own browsers here).
# haproxy: the load balancer in front of the replica e2e test; containerd: its ctr client pulls over TLS.
# rpm, ruby and three Java libraries: real rpm databases, gemspecs and Maven jars for the scanner tests.
PKGS=(chromium skopeo umoci podman fuse-overlayfs uidmap docker-registry nginx-light wrk slapd ldap-utils rpm ruby haproxy containerd
      libcommons-cli-java libslf4j-java libwagon-http-shaded-java)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" != "0" ]; then
        echo "missing Debian packages: ${missing[*]} (run as root or install them)" >&2
        exit 1
    fi
    echo "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    # Install slapd without a system directory of its own: the tests configure theirs.
    echo "slapd slapd/no_configuration boolean true" | debconf-set-selections
    # ...and keep the packaged service from ever starting (its init script honours this sentinel file).
    mkdir -p /etc/ldap && touch /etc/ldap/noslapd
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
