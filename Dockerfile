# One image for every service of docker-compose.yml: the testbed (MLServer), the Locust
# master and its workers. Everything is installed at build time (all dependencies ship as
# wheels: no compiler needed); nothing is downloaded when a container starts.
#
#   docker build -t seldon-load .
#   docker run --rm seldon-load seldon-load run --help
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Only what the package needs (no .venv, results or .git from the build context).
COPY pyproject.toml README.md ./
COPY protos ./protos
COPY seldon_load ./seldon_load
COPY locustfiles ./locustfiles
COPY deploy ./deploy

# The testbed extra brings MLServer (+ sklearn runtime) for the `testbed` service.
RUN pip install ".[testbed]" \
    && useradd --create-home --uid 1000 --user-group seldon \
    && mkdir -p /results \
    && chown seldon:seldon /results

USER seldon

# 8080 REST, 8081 gRPC, 8082 metrics (testbed); 8089 Locust web UI; 5557 master <- workers
EXPOSE 8080 8081 8082 8089 5557

CMD ["seldon-load", "--help"]
