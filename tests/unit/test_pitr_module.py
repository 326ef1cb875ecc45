"""_modules/pitr.py: the etcd and Patroni calls of a restore speak TLS when told to
(subprocess and HTTP replaced at the boundary)."""
from __future__ import annotations

from unittest.mock import patch

import pitr
import pytest


def test_remove_cluster_gives_etcdctl_halites_ca_and_roots_certificate():
    with patch.object(pitr, "_run", return_value="7\n") as run:
        n = pitr.remove_cluster("https://10.77.1.11:2379,https://10.77.1.12:2379", "/service", "halite",
                                cacert="/etc/halite/tls/ca.crt", cert="/etc/halite/tls/host.crt",
                                key="/etc/halite/tls/host.key")
    assert n == 7
    assert run.call_args.args[0] == ["etcdctl", "--endpoints=https://10.77.1.11:2379,https://10.77.1.12:2379",
                                     "--cacert=/etc/halite/tls/ca.crt", "--cert=/etc/halite/tls/host.crt",
                                     "--key=/etc/halite/tls/host.key", "del", "--prefix", "/service/halite/"]


def test_remove_cluster_in_clear_text_adds_no_tls_flags():
    with patch.object(pitr, "_run", return_value="") as run:
        assert pitr.remove_cluster(["http://10.77.1.11:2379"], "/service", "halite") == 0
    assert run.call_args.args[0] == ["etcdctl", "--endpoints=http://10.77.1.11:2379", "del", "--prefix", "/service/halite/"]


class _Opener:
    def __init__(self, seen):
        self.seen = seen

    def open(self, url, timeout=None):
        self.seen.append(url)
        raise OSError("refused")


@pytest.mark.parametrize("ca_file, url", [("/etc/halite/tls/ca.crt", "https://127.0.0.1:8008/patroni"),
                                          (None, "http://127.0.0.1:8008/patroni")])
def test_the_local_role_is_asked_over_https_with_the_ca(ca_file, url):
    seen, contexts = [], []
    with patch.object(pitr.ssl, "create_default_context", side_effect=lambda cafile: contexts.append(cafile)), \
            patch.object(pitr.urllib.request, "HTTPSHandler", side_effect=lambda context: None), \
            patch.object(pitr.urllib.request, "build_opener", side_effect=lambda *h: _Opener(seen)):
        assert pitr._local_role(8008, ca_file=ca_file) is None
    assert seen == [url] and contexts == ([ca_file] if ca_file else [])
