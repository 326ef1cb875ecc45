#!py
"""The pillar: topology.yaml + cluster.yaml + secrets.yaml (+ local.yaml), merged
and validated by halite.config. A bad value fails the pillar render, so salt-ssh
and salt-run stop before any host is changed, naming the key and the problem."""


def run():
    from halite.config import ConfigError, pillar_for

    try:
        return pillar_for(__opts__["id"])
    except ConfigError as exc:
        # Salt reports "_errors" as the pillar's render errors: every run stops
        # with this one message, before any state runs on any host.
        return {"_errors": [f"halite configuration error: {exc}"]}
