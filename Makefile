# raftkv. Every Go command runs with -tags hashicorpmetrics (see go.mod).
GO      ?= go
TAGS    ?= hashicorpmetrics
BIN     := bin
GOFLAGS_TAGS := -tags '$(TAGS)'

.PHONY: all build run test test-short race lint bench clean

all: build

build:
	$(GO) build $(GOFLAGS_TAGS) -o $(BIN)/raftkv ./cmd/raftkv

# A 3-node cluster on loopback: HTTP 8501-8503, Raft 8301-8303. Ctrl-C stops it.
run: build
	$(BIN)/raftkv local-cluster --nodes 3 --data-dir data

# A development CA plus certificates for the local nodes n1-n3 and a
# client-only certificate, in ./certs (existing files are kept). Then:
# bin/raftkv local-cluster --tls-dir certs (see docs/security.md).
CERTS ?= certs
.PHONY: certs
certs: build
	@test -f $(CERTS)/ca.pem || $(BIN)/raftkv tls ca --dir $(CERTS)
	@for n in n1 n2 n3; do test -f $(CERTS)/$$n.pem || \
	  $(BIN)/raftkv tls cert --dir $(CERTS) --name $$n --hosts 127.0.0.1,localhost || exit $$?; done
	@test -f $(CERTS)/client.pem || $(BIN)/raftkv tls cert --dir $(CERTS) --name client --client

# Packages whose tests start real processes (whole clusters, jepsen-lite
# scenarios). They run one package at a time: on a 2-core CI machine two
# clusters under test at once starve each other's heartbeats.
PROCESS_PKGS := ./cmd/raftkv/ ./cmd/jepsen-lite/ ./jepsen-lite/

# Everything CI runs: gofmt + vet, unit and in-process integration tests,
# end-to-end process tests, jepsen-lite scenarios, and the race detector on
# the packages with concurrency.
test: lint
	$(GO) test $(GOFLAGS_TAGS) -count=1 -timeout 10m $$($(GO) list ./... | grep -v -e /cmd/raftkv -e /cmd/jepsen-lite -e /jepsen-lite)
	$(GO) test $(GOFLAGS_TAGS) -count=1 -p 1 -timeout 25m $(PROCESS_PKGS)
	$(GO) test $(GOFLAGS_TAGS) -count=1 -race -timeout 15m ./fsm/ ./cluster/ ./httpapi/...

test-short:
	$(GO) test $(GOFLAGS_TAGS) -short -count=1 ./...

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet $(GOFLAGS_TAGS) ./...

bench:
	$(GO) test $(GOFLAGS_TAGS) -run '^$$' -bench . -benchmem ./fsm/ ./cluster/ ./httpapi/...

clean:
	rm -rf $(BIN)

# jepsen-lite soak: 5 nodes, all faults combined, one run per seed:workload
# (3 x 200s = 10 minutes). Exit status is the first non-valid verdict.
JEPSEN_RUNS ?= 1:register 2:set 3:register
JEPSEN_TIME ?= 200s
.PHONY: jepsen test-jepsen
jepsen: build
	$(GO) build $(GOFLAGS_TAGS) -o $(BIN)/jepsen-lite ./cmd/jepsen-lite
	@for r in $(JEPSEN_RUNS); do \
	  $(BIN)/jepsen-lite run --binary $(BIN)/raftkv --nodes 5 --nemesis all --combine \
	    --time-limit $(JEPSEN_TIME) --seed $${r%%:*} --workload $${r##*:} || exit $$?; done

# The jepsen-lite CI scenarios alone (about 5 minutes; partitions need root).
test-jepsen:
	$(GO) test $(GOFLAGS_TAGS) -count=1 -timeout 15m -v ./jepsen-lite/
