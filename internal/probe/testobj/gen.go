package testobj

// The source lives with the other C under bpf/; bpf2go writes the object and
// its loader here.
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -type event -type color maptypes ../../../bpf/testdata/maptypes.bpf.c -- -I../../../bpf/include
