# krsync: see README.md. `make example` runs the main job on a small tree, `make test` runs the tests.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
EXAMPLE_DEST ?= /tmp/krsync-example
KUBE_SCRIPT ?= ../shared/kube/control-plane.sh

.PHONY: build example test deps kube-build image-rootfs bench bench-slow bench-migrate fuzz image image-test

build:
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o bin/krsync .

deps:
	scripts/install-deps

# The runtime image as one OCI archive, without a container engine (tools/mkimage, README "Image"):
# Debian's packages by mmdebstrap, bin/krsync as a second layer. Every timestamp is
# SOURCE_DATE_EPOCH (the last commit's time unless set): the same tree gives the same digest.
IMAGE_ARCHIVE ?= bin/krsync-image.oci.tar
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
image: build
	scripts/install-image-deps
	go run ./tools/mkimage -binary bin/krsync -version $(VERSION) -revision "$$(git rev-parse HEAD 2>/dev/null)" \
	  -source-date-epoch $(SOURCE_DATE_EPOCH) -out $(IMAGE_ARCHIVE)

# Builds the image twice (same digest?), reads the archive, runs krsync from its root file
# system as its user (root needed: chroot). 1-2.5 min and the Debian mirror, so not part of `make test`.
image-test: deps
	scripts/install-image-deps
	KRSYNC_IMAGE_TEST=1 go test -count=1 -run TestImageArchive -v -timeout 20m ./tools/mkimage

# The e2e copy and the capability test on the test control plane, run from the archive `make
# image` wrote (its own layers and config, the krsync under test mounted in it).
image-e2e: image kube-build
	KRSYNC_IMAGE_ARCHIVE=$(IMAGE_ARCHIVE) go test -race -count=1 -run 'TestApplyManifestsCopiesHostileTree|TestEveryAddedCapabilityIsNeeded' -v -timeout 20m ./e2e/kube

example: deps build
	bin/krsync local --source testdata/example --dest $(EXAMPLE_DEST) --workers 4

# The Kubernetes tests need the control plane's binaries; KRSYNC_SKIP_KUBE=1 skips them, loudly.
kube-build:
	@if [ "$${KRSYNC_SKIP_KUBE:-}" = 1 ]; then echo "KRSYNC_SKIP_KUBE=1: Kubernetes tests will be skipped"; \
	else $(KUBE_SCRIPT) build; fi

# The test kubelet runs the e2e pods in the image's root file system: unpacked once per machine
# (~40 s and the Debian mirror the first time, then cached under ~/.cache/krsync-image).
image-rootfs:
	@if [ "$${KRSYNC_SKIP_KUBE:-}" = 1 ]; then echo "KRSYNC_SKIP_KUBE=1: no image root file system"; \
	else scripts/install-image-deps && go run ./tools/mkimage -rootfs-dir "$${XDG_CACHE_HOME:-$$HOME/.cache}/krsync-image"; fi

test: deps kube-build image-rootfs
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' | grep -v '/testdata/')); if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	go vet ./...
	go test -race -timeout 45m ./...
	scripts/fuzz

bench: deps build
	go test -run '^$$' -bench . -benchtime 1x -timeout 60m ./bench/

# Every metadata request on slow (FUSE) storage costs 1 ms: rsync, fpsync, xargs and krsync,
# source and destination behind bench/slowfs; writes bench/RESULTS.md. See bench/slow_test.go
# for the knobs (KRSYNC_BENCH_SHAPES=slow20k for the acceptance tree of issue 13).
bench-slow: deps build
	KRSYNC_BENCH_SLOW=1 go test -run '^$$' -bench 'Slow(Sync|Walk)' -benchtime 1x -timeout 240m -v ./bench/

# krsync migrate's downtime against the manual procedure (scale down, full copy, scale up) on
# the 100,000-file tree, on the test control plane with the test kubelet; see bench/migrate_test.go.
bench-migrate: deps build kube-build
	KRSYNC_BENCH_MIGRATE=1 go test -run '^$$' -bench Migrate -benchtime 1x -timeout 60m -v ./bench/

fuzz:
	scripts/fuzz
