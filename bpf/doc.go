// Package bpf compiles tcpdump filter expressions into classic BPF programs
// without libpcap or cgo, and runs such programs.
//
// An expression and a link type go in through Compile; a program comes out
// that the kernel accepts as a socket filter (SO_ATTACH_FILTER) and that
// makes the same accept/reject decisions libpcap 1.10's program would. Host,
// network, port and protocol names are never resolved: only numeric forms
// compile, and anything outside the supported grammar is refused with a
// SyntaxError pointing at the word. Program.Match runs a program over one
// packet for tests and offline use.
package bpf
