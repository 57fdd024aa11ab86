"""Credential files on the operator's machine are read as OpenSSH's StrictModes reads a key: not through a
link at their name, only a regular file of this user or root, only under folders no other user can change.
Real files, folders, links and a FIFO; other users' files are made with chown (the tests run as root)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from mcfleet.errors import InputError
from mcfleet.providers.base import ProviderError, read_secret
from mcfleet.util.private_file import CredentialRefused, read_credential

SECRET = "ROOT-ONLY-SECRET-never-in-a-message"
NOBODY = 65534
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="making another user's file needs root")


def _secret_file(folder: Path, name: str = "token", text: str = SECRET, mode: int = 0o600) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


def _refused(path: Path | str, what: str = "MCIAS token") -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        read_secret(str(path), what)
    exc = caught.value
    assert SECRET not in exc.message and SECRET not in (exc.hint or ""), exc.message
    return exc


def test_a_private_file_of_this_user_in_a_private_folder_is_read(tmp_path: Path) -> None:
    folder = tmp_path / "private"
    folder.mkdir(mode=0o700)
    assert read_secret(str(_secret_file(folder)), "MCIAS token") == SECRET


def test_a_file_in_a_sticky_folder_anyone_may_write_is_read(tmp_path: Path) -> None:
    """/tmp: others may add names but not replace this user's (the sticky bit)."""
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o1777)
    assert read_secret(str(_secret_file(folder)), "MCIAS token") == SECRET


def test_a_link_at_the_credential_path_is_refused_and_named_not_followed(tmp_path: Path) -> None:
    """Whoever can replace the link chooses the file root reads and sends (as a Bearer token)."""
    target = _secret_file(tmp_path / "root-only")
    link = tmp_path / "mcias-token"
    link.symlink_to(target)
    exc = _refused(link)
    assert exc.message.startswith(f"the MCIAS token file {link} is a symbolic link"), exc.message
    assert str(target) not in exc.message


@as_root
def test_a_link_made_by_another_user_in_their_folder_to_a_root_secret_is_refused(tmp_path: Path) -> None:
    """The reported case: /srv/mcp belongs to mcp, who links the token path to a root 0600 file."""
    target = _secret_file(tmp_path / "root-only")
    theirs = tmp_path / "srv-mcp"
    theirs.mkdir()
    os.chown(theirs, NOBODY, NOBODY)
    link = theirs / "mcias-token"
    link.symlink_to(target)
    os.lchown(link, NOBODY, NOBODY)
    exc = _refused(link)
    assert f"the MCIAS token file {link} is a symbolic link" in exc.message, exc.message


@as_root
def test_a_file_another_user_owns_is_refused(tmp_path: Path) -> None:
    path = _secret_file(tmp_path / "private")
    os.chown(path, NOBODY, NOBODY)
    exc = _refused(path)
    assert exc.message.startswith(f"the MCIAS token file {path} is owned by uid {NOBODY}"), exc.message
    assert "can replace the MCIAS token" in exc.message, exc.message


@as_root
@pytest.mark.parametrize("mode", [0o755, 0o777])
def test_a_file_in_a_folder_another_user_owns_is_refused(tmp_path: Path, mode: int) -> None:
    """The file is root's and 0600, but the folder's owner can rename it away and put any file there."""
    folder = tmp_path / "theirs"
    path = _secret_file(folder)
    os.chown(folder, NOBODY, NOBODY)
    folder.chmod(mode)
    exc = _refused(path)
    assert exc.message.startswith(f"the MCIAS token file {path} cannot be trusted: folder {folder} is owned by uid "
                                  f"{NOBODY}"), exc.message  # fmt: skip
    assert "/etc/mcfleet" in (exc.hint or ""), exc.hint


def test_a_file_in_a_folder_others_may_write_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "open"
    path = _secret_file(folder)
    folder.chmod(0o777)
    exc = _refused(path)
    assert f"folder {folder} is writable by its group and others (mode 0777)" in exc.message, exc.message
    folder.chmod(0o775)
    assert f"folder {folder} is writable by its group (mode 0775)" in _refused(path).message


@as_root
def test_a_folder_higher_up_that_another_user_owns_is_refused(tmp_path: Path) -> None:
    top = tmp_path / "theirs"
    path = _secret_file(top / "a" / "b")
    os.chown(top, NOBODY, NOBODY)
    top.chmod(0o755)
    assert f"folder {top} is owned by uid {NOBODY}" in _refused(path).message


@as_root
def test_a_link_on_the_way_is_followed_and_the_folders_it_leads_through_are_judged(tmp_path: Path) -> None:
    """A folder named through a link is judged where the link leads; the link's own folder too."""
    mine = tmp_path / "mine"
    _secret_file(mine)
    via = tmp_path / "via"
    via.symlink_to(mine)
    assert read_secret(str(via / "token"), "MCIAS token") == SECRET  # a link to a folder of this user's: fine
    theirs = tmp_path / "theirs"
    _secret_file(theirs)
    os.chown(theirs, NOBODY, NOBODY)
    via2 = tmp_path / "via2"
    via2.symlink_to("theirs")  # relative, as the kernel resolves it
    assert f"folder {theirs} is owned by uid {NOBODY}" in _refused(via2 / "token").message


@as_root
def test_dot_dot_after_a_link_is_judged_where_the_kernel_goes_not_by_the_name(tmp_path: Path) -> None:
    """`theirs/evil/../../mine/token` reads as `mine/token` by its name, but the kernel goes up from where
    `evil` (another user's link, in their folder) leads: here to alt/mine/token."""
    _secret_file(tmp_path / "mine")
    _secret_file(tmp_path / "alt" / "mine", text="CHOSEN-BY-THEM")
    (tmp_path / "alt" / "a" / "b").mkdir(parents=True)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "evil").symlink_to(tmp_path / "alt" / "a" / "b")
    os.chown(theirs, NOBODY, NOBODY)
    exc = _refused(f"{theirs}/evil/../../mine/token")
    assert f"folder {theirs} is owned by uid {NOBODY}" in exc.message, exc.message


@as_root
def test_a_link_on_the_way_in_a_sticky_folder_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    """In a sticky folder the link's owner may replace it: its target is theirs to choose."""
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    _secret_file(tmp_path / "mine")
    link = sticky / "creds"
    link.symlink_to(tmp_path / "mine")
    os.lchown(link, NOBODY, NOBODY)
    exc = _refused(link / "token")
    assert f"the link {link} on the way to it is owned by uid {NOBODY}" in exc.message, exc.message


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "token"
    os.mkfifo(fifo, 0o600)
    outcome: list[BaseException | str] = []

    def read() -> None:
        try:
            outcome.append(read_secret(str(fifo), "MCIAS token"))
        except BaseException as exc:  # handed to the test's thread
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=5)
    if reader.is_alive():  # unblock the reader so that it ends
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("reading a FIFO credential blocked")
    assert len(outcome) == 1 and isinstance(outcome[0], ProviderError), outcome
    assert outcome[0].message == f"the MCIAS token file {fifo} is a FIFO, not a regular file"


def test_this_users_file_open_to_others_is_still_refused(tmp_path: Path) -> None:
    path = _secret_file(tmp_path / "private", mode=0o640)
    exc = _refused(path)
    assert exc.message.startswith(f"the MCIAS token file {path} is open to other users (mode 0640)"), exc.message


def test_a_file_larger_than_the_cap_is_refused(tmp_path: Path) -> None:
    path = _secret_file(tmp_path / "private", text="x" * 100)
    with pytest.raises(CredentialRefused, match="is larger than 64 bytes"):
        read_credential(path, "TSIG key", limit=64)
    assert read_credential(path, "TSIG key", limit=101) == b"x" * 100 + b"\n"


def test_a_missing_file_is_still_the_cannot_read_error(tmp_path: Path) -> None:
    exc = _refused(tmp_path / "nothing")
    assert exc.message == f"cannot read the MCIAS token file {tmp_path / 'nothing'}: No such file or directory"


def test_the_acme_account_key_read_through_a_link_is_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from mcfleet.providers.cert.acme import load_account_key

    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    target = tmp_path / "root-only" / "account.pem"
    target.parent.mkdir()
    target.write_bytes(pem)
    target.chmod(0o600)
    link = tmp_path / "account-key.pem"
    link.symlink_to(target)
    with pytest.raises(ProviderError) as caught:
        load_account_key(str(link))
    assert caught.value.message.startswith(f"the ACME account key file {link} is a symbolic link"), caught.value
    assert target.read_bytes() == pem  # no key was made over the link's target
    assert load_account_key(str(target)).key.private_numbers() is not None  # the file itself is read


def test_the_age_identity_read_through_a_link_is_refused(tmp_path: Path) -> None:
    import pyrage  # type: ignore[import-untyped]  # no type information shipped

    from mcfleet.fleet.secrets import identities

    key = str(pyrage.x25519.Identity.generate())
    target = _secret_file(tmp_path / "root-only", "age.key", key)
    link = tmp_path / "age.key"
    link.symlink_to(target)
    with pytest.raises(InputError) as caught:
        identities(link)
    assert caught.value.message.startswith(f"the age identity file {link} is a symbolic link"), caught.value
    assert key not in caught.value.message
    assert len(identities(target)) == 1  # the file itself is read


def _ca_bundle(folder: Path, name: str = "ca.pem") -> Path:
    """A real self-signed CA certificate (PEM): what ssl loads as a provider's trust anchor."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.chmod(0o644)
    return path


def _ca_refused(path: Path, why: str) -> None:
    from mcfleet.providers.http import tls_context

    with pytest.raises(ProviderError) as caught:
        tls_context(str(path))
    assert caught.value.message.startswith(f"the CA bundle {path} cannot be trusted: {why}"), caught.value.message
    assert "(ca_file in fleet.json `providers`)" in caught.value.message


def test_a_ca_bundle_anyone_may_read_is_loaded_also_through_a_link_as_the_systems_are(tmp_path: Path) -> None:
    """The CA bundle is no secret (mode 0644 is fine) and /etc/ssl/certs holds links: both are taken."""
    from mcfleet.providers.http import tls_context

    bundle = _ca_bundle(tmp_path / "ca")
    assert tls_context(str(bundle)).cert_store_stats()["x509_ca"] == 1
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "lab.pem").symlink_to(bundle)
    assert tls_context(str(tmp_path / "certs" / "lab.pem")).cert_store_stats()["x509_ca"] == 1


@as_root
def test_a_ca_bundle_another_user_could_replace_is_refused(tmp_path: Path) -> None:
    """Whoever chooses the CA can answer as the provider and receive its token."""
    writable = _ca_bundle(tmp_path / "a")
    writable.chmod(0o664)
    _ca_refused(writable, "its group or others may write it (mode 0664)")
    theirs = _ca_bundle(tmp_path / "b")
    os.chown(theirs, NOBODY, NOBODY)
    _ca_refused(theirs, f"it is owned by uid {NOBODY}")
    open_folder = tmp_path / "c"
    bundle = _ca_bundle(open_folder)
    open_folder.chmod(0o777)
    _ca_refused(bundle, f"folder {open_folder} is writable by its group and others (mode 0777)")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "ca.pem").symlink_to(bundle)  # a trusted name leading into that folder: judged where it leads
    _ca_refused(tmp_path / "d" / "ca.pem", f"folder {open_folder} is writable by its group and others (mode 0777)")


@as_root
def test_a_ca_bundle_another_user_could_replace_refuses_the_plan_of_each_provider_that_names_it(
    tmp_path: Path,
) -> None:
    """Asked before apply changes anything (the providers' key_refusal), not first at the cert or DNS step."""
    import asyncio

    from mcfleet.fleet.models_providers import McnsProvider, MetacryptProvider
    from mcfleet.providers.cert.metacrypt import MetacryptCert
    from mcfleet.providers.dns.mcns import McnsDns

    token = _secret_file(tmp_path / "private")
    bundle = _ca_bundle(tmp_path / "ca")
    bundle.chmod(0o666)
    cert = MetacryptCert(MetacryptProvider(kind="metacrypt", url="https://127.0.0.1:9", token_file=str(token),
                                           ca_file=str(bundle)))  # fmt: skip
    dns = McnsDns(McnsProvider(kind="mcns", url="https://127.0.0.1:9", token_file=str(token), ca_file=str(bundle)),
                  "svc.example.test")  # fmt: skip
    for refusal in (asyncio.run(cert.key_refusal()), asyncio.run(dns.key_refusal())):
        assert refusal is not None and "cannot be trusted: its group or others may write it" in refusal.message
    bundle.chmod(0o644)
    assert asyncio.run(cert.key_refusal()) is None
    bundle.unlink()
    missing = asyncio.run(cert.key_refusal())
    assert missing is not None and missing.message.startswith(f"cannot read the CA bundle {bundle}")
