"""One quick pass of every failover scenario (halite's profile): no
acknowledged write lost, no two primaries, and the cluster heals by itself.
The full benchmark (both profiles, many runs) is `make bench-failover`."""
import pytest

from halite import failover

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def cluster(deployed):
    c = failover.Cluster()
    c.wait_healthy(240)
    return c


@pytest.mark.parametrize("scenario", failover.SCENARIOS)
def test_scenario_loses_nothing_and_heals(cluster, scenario):
    # run_scenario raises when the cluster has not healed (one leader, every replica streaming) within 240 s
    run = failover.run_scenario(scenario, "halite", cluster, heal_timeout=240)
    print({k: v for k, v in run.items() if k != "timeline"})
    assert run["acked_writes"] > 100, run
    assert run["lost_writes"] == 0, run["lost_ids"]
    assert run["dual_primary"] is False, run["dual_primary_evidence"]
    assert run["synchronous_mode"] is True
    assert cluster.healthy()
