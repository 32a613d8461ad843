# Sando container images. One Dockerfile, three stages:
#
#   build   golang:1.26-bookworm; compiles static, trimmed sando-api,
#           sando-worker and sandoctl into /out. Not meant to be run.
#   worker  the asynq worker (REDIS_URL required). It runs git and the
#           pipeline's build/stage/gate commands with `sh -c`, so it is based
#           on the Go toolchain image: EXTEND THIS IMAGE WITH THE TOOLCHAIN
#           YOUR PIPELINE BUILDS WITH (node, a JDK, cargo, make, …).
#           It also carries sandoctl (a CI job can run this image) and
#           sando-api, so `docker run --entrypoint sando-api`
#           on it gives the all-in-one mode (no REDIS_URL: embedded Redis and
#           an in-process worker, which needs git and the toolchain).
#   api     the HTTP API only, on distroless (no shell, no git): run it with
#           REDIS_URL and at least one worker. Default target (last stage).
#
#   docker build --target worker -t sando-worker .
#   docker build --target api    -t sando-api .      # or just: docker build .
#
# The api runs as uid:gid 65532:65532 (distroless's "nonroot"). The worker
# runs as root so that it can run the pipeline's commands as sando-build
# (SANDO_BUILD_USER), a user that owns nothing of the worker's: a build then
# cannot read the worker's environment (REDIS_URL, tokens, webhook secret) from
# /proc, nor its HOME. The api and every worker share one SANDO_DATA_DIR
# volume: the worker writes worktrees, logs and staged artifacts there, and
# the api reads the logs. /var/lib/sando in both images is owned by 65532,
# so a fresh named volume mounted there starts out writable by either.
#
# To run the worker as non-root instead (--user 65532), unset the build user
# (-e SANDO_BUILD_USER=): builds then run as the worker's own uid, and only
# the worker being non-dumpable keeps its environment from them (see the
# README's Guarantees).

ARG GO_VERSION=1.26
ARG SANDO_UID=65532
ARG SANDO_BUILD_UID=65533

# ---------------------------------------------------------------------------
FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOTOOLCHAIN=local
COPY go.mod go.sum ./
RUN go mod download && go mod verify
COPY . .
RUN go build -trimpath -ldflags "-s -w" -o /out/sando-api ./cmd/api \
 && go build -trimpath -ldflags "-s -w" -o /out/sando-worker ./cmd/worker \
 && go build -trimpath -ldflags "-s -w" -o /out/sandoctl ./cmd/sandoctl \
 && mkdir -p /out/empty

# ---------------------------------------------------------------------------
# Builds need a toolchain, hence golang rather than a slim base. Add what
# your pipeline needs here (or FROM this target in your own Dockerfile).
FROM golang:${GO_VERSION}-bookworm AS worker
ARG SANDO_UID
ARG SANDO_BUILD_UID
# git (already in the golang image, listed to make the dependency explicit),
# CA certificates for https remotes. sh is the base image's dash.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates git \
 && rm -rf /var/lib/apt/lists/*
# sando: the worker's HOME, private (0700): git credentials or ssh keys for
# the repository go there, out of the builds' reach; its uid/gid are
# distroless nonroot's (see the top), for a worker run with --user. Sando
# runs git with GIT_CONFIG_NOSYSTEM=1, so safe.directory goes in this global
# config: a repository mounted from the host (owned by another uid) would
# otherwise be refused as "dubious ownership".
# sando-build: whom the builds run as. It needs no home of its own: Sando
# gives its builds HOME=$SANDO_DATA_DIR/home/sando-build.
RUN groupadd --gid "${SANDO_UID}" sando \
 && useradd --uid "${SANDO_UID}" --gid "${SANDO_UID}" --create-home \
      --home-dir /home/sando --shell /bin/sh sando \
 && chmod 0700 /home/sando \
 && printf '[safe]\n\tdirectory = *\n' > /home/sando/.gitconfig \
 && chown "${SANDO_UID}:${SANDO_UID}" /home/sando/.gitconfig \
 && groupadd --gid "${SANDO_BUILD_UID}" sando-build \
 && useradd --uid "${SANDO_BUILD_UID}" --gid "${SANDO_BUILD_UID}" --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin sando-build \
 && install -d -o "${SANDO_UID}" -g "${SANDO_UID}" -m 0755 /var/lib/sando /etc/sando
COPY --from=build /out/sando-worker /out/sando-api /out/sandoctl /usr/local/bin/
# GOPATH, PATH… are passed to the phases; SANDO_* are not, and HOME is the
# build user's own. Root (no USER line): see the top.
ENV HOME=/home/sando \
    SANDO_CONFIG=/etc/sando/sando.yaml \
    SANDO_DATA_DIR=/var/lib/sando \
    SANDO_BUILD_USER=sando-build
WORKDIR /home/sando
ENTRYPOINT ["/usr/local/bin/sando-worker"]

# ---------------------------------------------------------------------------
# No shell and no curl here, so no HEALTHCHECK: probe GET /healthz and
# GET /readyz from outside (load balancer, orchestrator).
FROM gcr.io/distroless/static-debian12:nonroot AS api
COPY --from=build --chown=65532:65532 /out/empty /var/lib/sando
COPY --from=build /out/sando-api /usr/local/bin/sando-api
# SANDO_ADDR is left unset so a platform's PORT (every interface) still
# applies; without either the API listens on loopback only, useless in a
# container: set SANDO_ADDR=0.0.0.0:8080 (and SANDO_TOKEN).
ENV SANDO_CONFIG=/etc/sando/sando.yaml \
    SANDO_DATA_DIR=/var/lib/sando
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/sando-api"]
