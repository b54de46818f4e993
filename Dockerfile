# krsync: one image for the coordinator and the workers (the manifests run `krsync coordinator`
# and `krsync worker` from it). Build: docker build --build-arg VERSION=$(git describe --tags --always) -t krsync .
#
# The binary is static (CGO_ENABLED=0), built exactly as `make build` does (a test compares the
# two command lines). The final image holds rsync, CA certificates and krsync, nothing else.
#
# It runs as a non-root user (UID 65532, change it with --build-arg UID=...). Copying a volume
# faithfully needs root: rsync can only set numeric owners (--numeric-ids, -o, -g) with
# CAP_CHOWN, and reading and writing files of other owners needs CAP_DAC_OVERRIDE, CAP_FOWNER
# and CAP_FSETID. manifests/ therefore runs the pods with runAsUser: 0 and only those
# capabilities; run as this image's user only for trees that one user owns.

ARG GO_VERSION=1.26
ARG DEBIAN_RELEASE=trixie

FROM golang:${GO_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/krsync .

FROM debian:${DEBIAN_RELEASE}-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends rsync ca-certificates \
 && rm -rf /var/lib/apt/lists/*
ARG UID=65532
ARG GID=65532
RUN groupadd --gid "${GID}" krsync \
 && useradd --uid "${UID}" --gid "${GID}" --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin krsync
COPY --from=build /out/krsync /usr/local/bin/krsync
# Numeric, so that Kubernetes' runAsNonRoot can check it.
USER ${UID}:${GID}
ENTRYPOINT ["krsync"]
