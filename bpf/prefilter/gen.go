package prefilter

//go:generate go tool bpf2go -tags linux -cflags "-O2 -g -Wall -Werror -mcpu=v3 -Iinclude" -target bpfel -type stats -type counter -type scratch -type flow_key -type flow_val prefilter prefilter.c
