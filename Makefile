# Two commands do everything on a fresh machine with Python 3.11: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test browser spamassassin imapd vnu lint types unit bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { \
		echo "python3 -m venv failed: installing Debian's python3-venv"; rm -rf $(VENV); \
		SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq python3-venv && \
		$(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/newsletter run

test: $(STAMP) browser spamassassin imapd vnu lint types unit

# The subscribe pages are tested in a real headless Chromium (Debian's, driven by selenium): install it when missing.
browser:
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || { \
		echo "installing Debian's chromium and chromium-driver for the browser tests"; \
		SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver; }

# The digest is scored by SpamAssassin's local rules: install Debian's spamassassin when missing (without its
# recommends: no spamd daemon is set up).
spamassassin:
	@command -v spamassassin >/dev/null || { \
		echo "installing Debian's spamassassin for the digest's spam score test"; \
		SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends spamassassin; }

# Bounces are read from a real IMAP server: the tests start a Dovecot of their own (Debian's dovecot-imapd) on
# 127.0.0.1, installed when missing. The package starts the system's Dovecot for every user of this machine: stopped
# and disabled again at once (the tests need only the program).
imapd:
	@test -x /usr/sbin/dovecot || { \
		echo "installing Debian's dovecot-imapd for the IMAP inbound test"; \
		SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq dovecot-imapd && \
		{ test ! -d /run/systemd/system || $$SUDO systemctl disable --now dovecot.service dovecot.socket; }; }

# Every kind of page is checked with the Nu Html Checker (vnu.jar, from the npm registry, run with the machine's Java):
# installed into .venv/vnu/ when missing (a few seconds). Without npm or Java the check is skipped, saying why.
VNU_VERSION := 26.9.27
vnu: $(STAMP)
	@test -f $(VENV)/vnu/node_modules/vnu-jar/build/dist/vnu.jar || { \
		if command -v npm >/dev/null && command -v java >/dev/null; then \
			npm install --silent --prefix $(VENV)/vnu --no-save --ignore-scripts --no-audit --no-fund vnu-jar@$(VNU_VERSION); \
		else echo "no npm or no java: the Nu Html Checker test is skipped"; fi; }

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

# The store, ingest, stories, digest and service tests run on SQLite and on PostgreSQL: scripts/with_postgres.sh
# starts a throwaway PostgreSQL (installed from Debian's packages when missing) unless NEWSLETTER_TEST_PG_URL is set.
# Two pytest-xdist workers: each test has its own SQLite file or PostgreSQL schema and its own ports, and the suite
# (1,500 tests, most waiting on real servers) takes half the time on a 2-core machine. TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= 2
unit: $(STAMP)
	scripts/with_postgres.sh $(BIN)/pytest -q -n $(TEST_WORKERS)

# Benchmarks are plain scripts (speed lives in benchmarks, never in tests); each prints its figures.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	for script in tests/benchmarks/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
