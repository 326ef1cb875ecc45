# halite: the two commands of the README, and the rest.
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
HALITE := $(VENV)/bin/halite
SALT_SSH := $(VENV)/bin/salt-ssh
RUNS ?= 3
CUTS ?= 9
# What the lab needs on this machine (make demo): containers, the base image, the signed mirror.
DEBS := systemd-container debootstrap dpkg-dev apt-utils gnupg iproute2 nftables openssh-client
# What the tests add (make test, the benchmarks): a local PostgreSQL, PgBouncer and pgBackRest
# for the offline tests, Chromium for the browser tests.
TEST_DEBS := postgresql-15 postgresql-client-15 pgbouncer pgbackrest chromium chromium-driver
# $(call APT_INSTALL,PACKAGES): install those of PACKAGES that are missing (nothing if none is).
APT_INSTALL = if ! dpkg -s $(1) >/dev/null 2>&1; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1) >/dev/null; fi

.PHONY: deps test-deps demo test test-unit down status bench-failover bench-power-loss bench-connections bench-loop-wait bench-web bench-backup clean

$(VENV)/.deps-ok: pyproject.toml
	@echo "==> Debian packages: $(DEBS)"
	@$(call APT_INSTALL,$(DEBS))
	@echo "==> Python virtualenv $(VENV) (salt 3008.4, pytest-salt-factories, psycopg 3)"
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(VENV)/bin/pip install -q -e '.[test]' 2>&1 | grep -v '^WARNING: Location' || true
	@$(PY) -c 'import salt, pydantic, yaml, flask, psycopg, matplotlib, saltfactories' 
	@touch $@

$(VENV)/.test-debs-ok: Makefile | $(VENV)/.deps-ok
	@echo "==> Debian packages for the tests: $(TEST_DEBS)"
	@$(call APT_INSTALL,$(TEST_DEBS))
	@touch $@

# nginx unpacked under .venv/nginx (not installed: no service started on this
# machine) for the render test that runs `nginx -t` on the site's config.
$(VENV)/nginx/usr/sbin/nginx: | $(VENV)/.deps-ok
	@echo "==> nginx (unpacked under $(VENV)/nginx for nginx -t)"
	@rm -rf $(VENV)/nginx-debs && mkdir -p $(VENV)/nginx-debs
	@cd $(VENV)/nginx-debs && apt-get download -qq nginx nginx-common 2>/dev/null
	@for deb in $(VENV)/nginx-debs/*.deb; do dpkg -x $$deb $(VENV)/nginx; done
	@test -x $@

# promtool (Debian's prometheus package, unpacked under .venv/prometheus, not
# installed: no Prometheus server started on this machine) for the render test
# that runs `promtool check rules/config` and `promtool test rules`.
$(VENV)/prometheus/usr/bin/promtool: | $(VENV)/.deps-ok
	@echo "==> promtool (unpacked under $(VENV)/prometheus)"
	@rm -rf $(VENV)/prometheus-debs && mkdir -p $(VENV)/prometheus-debs
	@cd $(VENV)/prometheus-debs && apt-get download -qq prometheus 2>/dev/null
	@for deb in $(VENV)/prometheus-debs/*.deb; do dpkg -x $$deb $(VENV)/prometheus; done
	@test -x $@

# HAProxy (Debian's package and the libraries it links, unpacked under .venv/haproxy, not
# installed: no service started) for the render tests that run `haproxy -c` on haproxy.cfg.
$(VENV)/haproxy/usr/sbin/haproxy: | $(VENV)/.deps-ok
	@echo "==> haproxy (unpacked under $(VENV)/haproxy for haproxy -c)"
	@rm -rf $(VENV)/haproxy-debs && mkdir -p $(VENV)/haproxy-debs
	@cd $(VENV)/haproxy-debs && apt-get download -qq haproxy liblua5.3-0 libopentracing-c-wrapper0 libopentracing1 2>/dev/null
	@for deb in $(VENV)/haproxy-debs/*.deb; do dpkg -x $$deb $(VENV)/haproxy; done
	@test -x $@

# salt-run writes job files under .salt-run/cache/proc but does not create it
# (salt-ssh does): make it, so `make demo` works as the first Salt command.
# The lab mirror's signing key (made once, kept in /var/lib/halite/mirror-key): pillar/lab.yaml
# names it, so every pillar of the lab, in the tests that need no lab too, reads it.
deps: $(VENV)/.deps-ok
	@mkdir -p .salt-run/cache/proc
	@$(PY) -c 'from halite import lab; lab.mirror_key()'

# The tests' and benchmarks' tools on top (make demo does without them).
test-deps: deps $(VENV)/.test-debs-ok $(VENV)/nginx/usr/sbin/nginx $(VENV)/prometheus/usr/bin/promtool $(VENV)/haproxy/usr/sbin/haproxy

demo: deps
	$(HALITE) config check
	$(HALITE) lab up
	$(HALITE) orch deploy
	$(HALITE) orch migrate
	@echo; $(HALITE) lab status
	@echo; $(HALITE) cluster
	@echo; echo "The car market: $$($(HALITE) lab url)"
	@echo "  its certificate is from halite's CA: $$($(PY) -c 'from halite import config, view; print(view.site_ca(config.load()) or "none (tls.unsafe_plaintext: site)")')"
	@echo "Prometheus (metrics, alerts): $$($(PY) -c 'from halite import config, view; print(view.prometheus_url(config.load()) or "none (no host has the role monitoring)")')"
	@echo "The dashboard: $$($(PY) -c 'from halite import config, view; print(view.dashboard_url(config.load()) or "none")')"

# The lab tests mostly wait on the lab; the others (unit, render, web, workload) only need the
# CPU. Both run at once: the others at the lowest priority (the lab keeps the CPU it needs),
# their output in .test-logs/offline.log, shown when both have ended. (`tests --ignore=tests/lab`,
# not the four folders: named at once, their conftest.py files would all be loaded first and the
# last one would answer every `from conftest import`.)
test: test-deps
	@mkdir -p .test-logs
	@echo "==> unit, render, web and workload tests in the background (nice 19): .test-logs/offline.log"
	@nice -n 19 $(VENV)/bin/pytest -v -rs --durations=15 -p no:cacheprovider \
		tests --ignore=tests/lab > .test-logs/offline.log 2>&1 & offline=$$!; \
	trap 'kill $$offline 2>/dev/null; exit 130' INT TERM; \
	$(VENV)/bin/pytest -v -rs --durations=25 tests/lab; lab=$$?; \
	wait $$offline; off=$$?; \
	echo; echo "==> unit, render, web and workload tests (.test-logs/offline.log):"; \
	grep -v " PASSED " .test-logs/offline.log; \
	echo "==> lab tests: exit $$lab; the others: exit $$off"; \
	test $$lab -eq 0 -a $$off -eq 0

test-unit: test-deps
	$(VENV)/bin/pytest -q tests/unit tests/render

down:
	@if [ -x $(HALITE) ]; then $(HALITE) lab down; else echo "no virtualenv: nothing to remove"; fi

status: deps
	$(HALITE) lab status

# Every failover scenario RUNS times under both timing profiles, in one run.
bench-failover: test-deps
	$(HALITE) lab up
	$(HALITE) orch deploy
	$(HALITE) bench failover --runs $(RUNS) --profiles halite,patroni-defaults

# The power-loss headline: CUTS (9 unless told) power cuts of the primary per profile, each at a
# random point of Patroni's loop, with the lock's age at each cut (bench/results/power-loss.md).
bench-power-loss: test-deps
	$(HALITE) lab up
	$(HALITE) orch deploy
	$(HALITE) bench failover --runs $(CUTS) --scenarios primary-poweroff \
	  --profiles halite,patroni-defaults --out bench/results/power-loss

# A storm of new clients through HAProxy: 1,000 and 5,000 at once on each port, connect times
# and errors (bench/results/connections.md).
bench-connections: test-deps
	$(HALITE) lab up
	$(HALITE) orch deploy
	$(PY) -m halite.stormbench --clients 1000,5000 --ports write,read

# Why loop_wait is 3: power loss and PostgreSQL crash under loop_wait 2, 3, 4, in one run.
bench-loop-wait: test-deps
	$(HALITE) lab up
	$(HALITE) orch deploy
	$(HALITE) bench failover --runs $(RUNS) --scenarios primary-poweroff,postgres-crash \
	  --profiles halite-loop-wait-2,halite,halite-loop-wait-4 --out bench/results/loop-wait

# The site on the old server against the site on the cluster, same code, same load.
bench-web: test-deps
	$(HALITE) lab up
	$(HALITE) orch deploy
	$(HALITE) orch migrate
	$(PY) -m halite.webbench_lab

# Backups: pgBackRest full, incremental and restore against pg_basebackup per
# pgbench scale, then the RPO of asynchronous archiving when every db host loses
# power (RUNS times), in one run: bench/results/backup.json and backup.md.
bench-backup: test-deps
	$(HALITE) lab up
	$(HALITE) orch deploy
	$(PY) -m halite.backupbench --rpo-runs $(RUNS)

clean: down
	rm -rf /var/lib/halite .salt-run
