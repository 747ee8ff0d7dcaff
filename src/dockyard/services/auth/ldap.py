"""LDAP / Active Directory login: find the user with a service bind, bind as the user with the
password given, and read the groups the user belongs to (groupOfNames/groupOfUniqueNames members,
or AD's memberOf).

ldap3 (about 5 MiB and 130 modules) is imported when a provider is made, so a server without LDAP
never loads it."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ldap3


@dataclass(frozen=True, slots=True)
class LdapSettings:
    url: str  # ldap://host:389 or ldaps://host:636
    user_base: str
    bind_dn: str | None = None
    bind_password: str | None = None
    user_filter: str = "(&(objectClass=inetOrgPerson)(uid={username}))"  # AD: (sAMAccountName={username})
    group_base: str | None = None
    group_filter: str = "(|(member={dn})(uniqueMember={dn}))"
    group_name_attribute: str = "cn"
    email_attribute: str = "mail"
    start_tls: bool = False
    verify_tls: bool = True
    ca_file: str | None = None
    timeout: int = 5  # seconds; ldap3 needs a whole number for the receive timeout


@dataclass(frozen=True, slots=True)
class LdapUser:
    username: str
    dn: str
    email: str | None
    groups: list[str]


class LdapUnavailable(Exception):
    """The directory could not be reached or refused the service bind (not a wrong password)."""


class LdapProvider:
    def __init__(self, settings: LdapSettings) -> None:
        import ldap3

        self.settings = settings
        tls = None
        if settings.url.startswith("ldaps://") or settings.start_tls:
            tls = ldap3.Tls(
                validate=ssl.CERT_REQUIRED if settings.verify_tls else ssl.CERT_NONE,
                ca_certs_file=settings.ca_file,
            )
        self._server = ldap3.Server(settings.url, tls=tls, connect_timeout=settings.timeout, get_info=ldap3.NONE)

    def _connect(self, user: str | None, password: str | None) -> ldap3.Connection:
        import ldap3

        conn = ldap3.Connection(
            self._server,
            user=user,
            password=password,
            receive_timeout=self.settings.timeout,
            raise_exceptions=False,
            auto_bind=ldap3.AUTO_BIND_NONE,
        )
        conn.open()
        if self.settings.start_tls and not self.settings.url.startswith("ldaps://") and not conn.start_tls():
            raise LdapUnavailable(f"StartTLS failed: {conn.result}")
        return conn

    def authenticate(self, username: str, password: str) -> LdapUser | None:
        """The user, if the directory accepts this password; None for unknown users or wrong passwords."""
        from ldap3.core.exceptions import LDAPException
        from ldap3.utils.conv import escape_filter_chars

        if not password:  # an empty password would be an anonymous ("unauthenticated") bind that succeeds
            return None
        cfg = self.settings
        try:
            service = self._connect(cfg.bind_dn, cfg.bind_password)
            try:
                if not service.bind():
                    raise LdapUnavailable(f"service bind failed: {service.result.get('description')}")
                service.search(
                    cfg.user_base,
                    cfg.user_filter.format(username=escape_filter_chars(username)),
                    attributes=[cfg.email_attribute, "memberOf"],
                    size_limit=2,
                )
                entries = list(service.entries)
                if len(entries) != 1:
                    return None  # unknown, or ambiguous: never guess which account is meant
                entry = entries[0]
                dn = entry.entry_dn
                email = _first(entry, cfg.email_attribute)
                groups = self._groups(service, dn, entry)
            finally:
                service.unbind()
            user_conn = self._connect(dn, password)
            try:
                if not user_conn.bind():
                    return None
            finally:
                user_conn.unbind()
        except LDAPException as exc:
            raise LdapUnavailable(str(exc)) from exc
        return LdapUser(username, dn, email, groups)

    def _groups(self, conn: ldap3.Connection, dn: str, entry: ldap3.Entry) -> list[str]:
        from ldap3.utils.conv import escape_filter_chars

        cfg = self.settings
        names: set[str] = set()
        if cfg.group_base:
            conn.search(
                cfg.group_base,
                cfg.group_filter.format(dn=escape_filter_chars(dn)),
                attributes=[cfg.group_name_attribute],
            )
            for group in conn.entries:
                name = _first(group, cfg.group_name_attribute)
                if name:
                    names.add(name)
        # Active Directory lists groups on the user: take the first RDN's value of each.
        if "memberOf" in entry.entry_attributes:
            for group_dn in entry["memberOf"].values:
                rdn = str(group_dn).split(",", 1)[0]
                if "=" in rdn:
                    names.add(rdn.split("=", 1)[1])
        return sorted(names)


def _first(entry: ldap3.Entry, attribute: str) -> str | None:
    if attribute in entry.entry_attributes:
        values = entry[attribute].values
        if values:
            return str(values[0])
    return None
