#!py
"""The pillar: topology.yaml + lab.yaml + secrets.yaml (+ local.yaml), merged and
checked by halite.config (the model in halite/model.py); each host receives its
own view (halite/view.py) with only the secrets its roles need. A bad value
fails the pillar render, so salt-ssh and salt-run stop before any host is
changed, with one line per problem naming the key, the value and what is allowed."""


def run():
    from halite.config import ConfigError, pillar_for

    try:
        return pillar_for(__opts__["id"])
    except ConfigError as exc:
        # Salt reports "_errors" as the pillar's render errors: every run stops
        # with this one message, before any state runs on any host.
        return {"_errors": [f"halite configuration error: {key}: {msg}" for key, msg in exc.problems]}
