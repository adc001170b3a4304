# rampart build entry points. CI runs .ci/run, which uses the same commands.

GO ?= go

.PHONY: all generate build test vet check-generated clean

all: build

# Regenerate every go:generate output (bpf2go: C -> BPF object + Go loader).
# Needs clang, llvm-strip and libbpf headers (/usr/include/bpf).
generate:
	$(GO) generate ./...

build:
	$(GO) build -o rampart ./cmd/rampart

# The BPF tests need root; as another user they skip.
test:
	$(GO) test ./...

vet:
	$(GO) vet ./...

# Fails when a committed generated file differs from what go generate makes.
check-generated:
	bash .ci/check-generated

clean:
	rm -f rampart
