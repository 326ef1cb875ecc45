"""halite.model.Packages: package sources, and dnf repositories that name their signing key."""
import pytest
from pydantic import ValidationError

from halite import model

BASEURL = "https://download.postgresql.org/pub/repos/yum/17/redhat/rhel-9-x86_64"
KEY = "https://download.postgresql.org/pub/repos/yum/keys/PGDG-RPM-GPG-KEY-RHEL"


def test_a_repository_with_its_key():
    p = model.Packages.model_validate({"yum_repos": {"pgdg17": {"baseurl": BASEURL, "gpgkey": KEY}}})
    repo = p.yum_repos["pgdg17"]
    assert (repo.baseurl, repo.gpgkey, repo.gpgcheck) == (BASEURL, KEY, True)


def test_a_checked_repository_without_a_key_is_refused():
    with pytest.raises(ValidationError, match="gpgcheck is on but no gpgkey is given"):
        model.Packages.model_validate({"yum_repos": {"pgdg17": {"baseurl": BASEURL}}})


def test_an_unchecked_repository_needs_no_key():
    p = model.Packages.model_validate({"yum_repos": {"local": {"baseurl": "file:///srv/rpms", "gpgcheck": False}}})
    assert p.yum_repos["local"].gpgkey is None


def test_the_old_form_name_to_url_is_refused():
    with pytest.raises(ValidationError):
        model.Packages.model_validate({"yum_repos": {"pgdg17": BASEURL}})
