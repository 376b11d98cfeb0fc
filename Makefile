# All set-up happens here: a fresh machine needs only Python >= 3.10 and pip.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: venv install test unit demo bench bench-smoke protos lint clean prometheus-bins

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# openssl makes the certificate of the testbed's TLS ingress at start-up.
$(STAMP): pyproject.toml | $(PY)
	@command -v openssl >/dev/null 2>&1 || \
		{ command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
		  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null) || \
		  echo "openssl not installed: the testbed's TLS ingress cannot start"; }
	$(PIP) install --quiet -e '.[testbed,test]'
	touch $(STAMP)

venv: $(PY)
install: $(STAMP)

# Server resources are read from a real Prometheus scraping a real process-exporter (Debian).
prometheus-bins:
	@{ test -x /usr/bin/prometheus && test -x /usr/bin/prometheus-process-exporter; } || \
		{ command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
		  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus prometheus-process-exporter >/dev/null) || \
		  echo "prometheus / prometheus-process-exporter not installed: the server resource tests will fail, the demo runs without them"; }

# The web UI tests drive a real browser: Debian's chromium, through Playwright.
test: $(STAMP) prometheus-bins
	@test -x /usr/bin/chromium || \
		{ command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
		  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
		  echo "chromium not installed (not root or no apt-get): the web UI browser tests will fail"; }
	$(PY) -m pytest -q -p no:cacheprovider tests

unit: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests/unit

demo: $(STAMP) prometheus-bins
	$(VENV)/bin/seldon-load demo --results results/demo

# The fast static target of the max-rate and scale-out figures is Debian's nginx, and tcpdump
# is the wire-level judge of the REST latency figure; run_all.py skips what cannot be installed.
bench: $(STAMP)
	$(PIP) install --quiet -e '.[bench]'
	@command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx || \
		{ command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
		  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null) || \
		  echo "nginx not installed: the max-rate and scale-out figures will be skipped"; }
	@command -v tcpdump >/dev/null 2>&1 || test -x /usr/bin/tcpdump || \
		{ command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
		  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tcpdump >/dev/null) || \
		  echo "tcpdump not installed: the latency figure will have no wire-level judge"; }
	$(PY) benchmarks/run_all.py --out docs/performance-data.json

bench-smoke: $(STAMP)
	$(PY) benchmarks/run_all.py --quick

protos: $(STAMP)
	$(PY) -m seldon_load.oip.gen_protos

lint: $(STAMP)
	$(VENV)/bin/ruff check seldon_load tests benchmarks locustfiles

clean:
	rm -rf $(VENV) results .pytest_cache
