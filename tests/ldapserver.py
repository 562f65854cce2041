"""A real OpenLDAP ``slapd`` for the tests: Debian's package, our own configuration file
(``-f``) and directory in a temporary folder, on 127.0.0.1 (LDAP with StartTLS, and
LDAPS), with a certificate made here for 127.0.0.1 and a CA the server is told of.

The directory: people (one of them locked by the password-policy overlay, as a
disabled account is in OpenLDAP), groups, and a service account for search-then-bind.
``Slapd.modify`` changes it while epe runs (a user disabled, a membership ended).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.pgserver import free_port, terminate

INSTALL_HINT = ("OpenLDAP's slapd is not installed: `make test` installs Debian's package "
                "(apt-get install slapd)")
SLAPD = "/usr/sbin/slapd"
SUFFIX = "dc=example,dc=org"
ROOT_DN, ROOT_PW = f"cn=admin,{SUFFIX}", "root-secret"
SERVICE_DN, SERVICE_PW = f"cn=epe-service,ou=services,{SUFFIX}", "service-secret"
PEOPLE, GROUPS = f"ou=people,{SUFFIX}", f"ou=groups,{SUFFIX}"
# An active account is one the password policy has not locked.
ACTIVE_FILTER = "(&(objectClass=inetOrgPerson)(uid={username})(!(pwdAccountLockedTime=*)))"
LOCKED = "000001010000Z"  # locked until an administrator unlocks it

# name -> (password, groups); every name is also its uid.
PEOPLE_ENTRIES = {
    "alice": ("alice-pw", ["data-science"]),
    "bob": ("bob-pw", []),
    "carol": ("carol-pw", ["data-science", "epe-admins"]),
    "dave": ("dave-pw", []),  # disabled
    "erin": ("erin-pw", ["data-science"]),
    "jane.doe": ("jane-pw", []),
}
DISABLED = "dave"


def user_dn(uid: str) -> str:
    return f"uid={uid},{PEOPLE}"


def ldif() -> str:
    entries = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example",
        *(f"dn: ou={ou},{SUFFIX}\nobjectClass: organizationalUnit\nou: {ou}"
          for ou in ("people", "groups", "services", "policies")),
        f"dn: cn=default,ou=policies,{SUFFIX}\nobjectClass: organizationalRole\n"
        "objectClass: pwdPolicy\ncn: default\npwdAttribute: userPassword\npwdLockout: TRUE",
        f"dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
        f"cn: epe-service\nuserPassword: {SERVICE_PW}",
    ]
    for uid, (password, _groups) in PEOPLE_ENTRIES.items():
        lines = [f"dn: {user_dn(uid)}", "objectClass: inetOrgPerson", f"uid: {uid}",
                 f"cn: {uid}", f"sn: {uid}", f"userPassword: {password}"]
        if uid == DISABLED:
            lines.append(f"pwdAccountLockedTime: {LOCKED}")
        entries.append("\n".join(lines))
    groups: dict[str, list[str]] = {}
    for uid, (_password, names) in PEOPLE_ENTRIES.items():
        for group in names:
            groups.setdefault(group, []).append(user_dn(uid))
    for group, members in groups.items():
        entries.append("\n".join([f"dn: cn={group},{GROUPS}", "objectClass: groupOfNames",
                                  f"cn: {group}", *(f"member: {m}" for m in members)]))
    return "\n\n".join(entries) + "\n"


def config(root: Path) -> str:
    return f"""
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload ppolicy
pidfile {root}/slapd.pid
TLSCACertificateFile {root}/ca.pem
TLSCertificateFile {root}/server.pem
TLSCertificateKeyFile {root}/server.key
database mdb
maxsize 104857600
suffix "{SUFFIX}"
rootdn "{ROOT_DN}"
rootpw {ROOT_PW}
directory {root}/db
overlay ppolicy
ppolicy_default "cn=default,ou=policies,{SUFFIX}"
access to attrs=userPassword by anonymous auth by self read by * none
access to * by users read by anonymous read
"""


def make_certificates(root: Path) -> None:
    """A CA and a certificate for 127.0.0.1 signed by it (what a company's own CA does)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def cert(subject: str, key: Any, issuer: Any, issuer_key: Any, ca: bool) -> Any:
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(issuer).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(days=1))
                   .not_valid_after(now + dt.timedelta(days=30))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "epe tests CA")])
    ca = cert("epe tests CA", ca_key, ca_name, ca_key, True)
    server = cert("127.0.0.1", key, ca_name, ca_key, False)
    pem = serialization.Encoding.PEM
    (root / "ca.pem").write_bytes(ca.public_bytes(pem))
    (root / "server.pem").write_bytes(server.public_bytes(pem))
    (root / "server.key").write_bytes(key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


class Slapd:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="epe-slapd-"))
        self.port, self.tls_port = free_port(), free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.tls_port}"

    @property
    def ca_file(self) -> str:
        return str(self.root / "ca.pem")

    def start(self) -> Slapd:
        (self.root / "db").mkdir()
        make_certificates(self.root)
        conf = self.root / "slapd.conf"
        conf.write_text(config(self.root))
        (self.root / "data.ldif").write_text(ldif())
        subprocess.run(["/usr/sbin/slapadd", "-f", str(conf), "-l", str(self.root / "data.ldif")],
                       check=True, capture_output=True, timeout=60)
        self.proc = subprocess.Popen(
            [SLAPD, "-f", str(conf), "-h", f"{self.url}/ {self.ldaps_url}/", "-d", "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 30) -> None:
        import ldap3

        deadline = time.monotonic() + timeout
        while True:
            try:
                conn = ldap3.Connection(ldap3.Server(self.url), ROOT_DN, ROOT_PW, auto_bind=True)
                conn.unbind()
                return
            except ldap3.core.exceptions.LDAPException:
                if (self.proc is not None and self.proc.poll() is not None) or \
                        time.monotonic() > deadline:
                    err = self.proc.stderr.read().decode() if self.proc and self.proc.stderr \
                        else ""
                    raise RuntimeError(f"slapd did not start: {err}") from None
                time.sleep(0.1)

    def modify(self, dn: str, changes: dict[str, Any]) -> None:
        """Change an entry as the directory's administrator (ldap3's modify changes)."""
        import ldap3

        conn = ldap3.Connection(ldap3.Server(self.url), ROOT_DN, ROOT_PW, auto_bind=True)
        try:
            assert conn.modify(dn, changes), conn.result
        finally:
            conn.unbind()

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)
        shutil.rmtree(self.root, ignore_errors=True)


def installed() -> bool:
    return (Path(SLAPD).exists() and shutil.which("slapadd") is not None) or \
        Path("/usr/sbin/slapadd").exists()
