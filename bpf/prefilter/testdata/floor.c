//go:build ignore

// SPDX-License-Identifier: (MIT OR GPL-2.0-only)
//
// Reference programs for BenchmarkPrefilterFloor: what reading packet bytes
// costs a socket filter on the running host, each way the kernel allows, and
// a program written by hand for exactly the work the 5-term benchmark packet
// needs (IPv4/TCP class counting, no VLAN, IPv6 or cutoff code, the filter
// "tcp and port 80 and host 198.18.0.1 and not port 22 and len > 60" written
// out in C), with and without bounds checks on its reads. None of them is
// used by sonde; they measure the floor its prefilter is compared with.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct sk_buff {
	unsigned int data_len;
	unsigned char *data;
} __attribute__((preserve_access_index));

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;
extern void *bpf_rdonly_cast(const void *obj__ign, __u32 btf_id__k) __ksym;
extern int bpf_dynptr_from_skb(struct __sk_buff *skb, __u64 flags, struct bpf_dynptr *ptr__uninit) __ksym;
extern void *bpf_dynptr_slice(const struct bpf_dynptr *p, __u32 offset, void *buffer__opt,
			      __u32 buffer__szk) __ksym;
unsigned long long load_byte(void *skb, unsigned long long off) asm("llvm.bpf.load.byte");

char __license[] SEC("license") = "Dual MIT/GPL";

struct counter {
	__u64 packets, bytes;
};

struct floor_stats {
	struct counter l3[4], l4[4], syn, rst, fin, filtered_out;
	__u8 bytes[64];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct floor_stats);
} floor_map SEC(".maps");

static __always_inline struct floor_stats *stats(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&floor_map, &zero);
}

static __always_inline const __u8 *in_place(struct __sk_buff *skb)
{
	struct sk_buff *k = bpf_cast_to_kern_ctx(skb);
	return bpf_rdonly_cast(k->data, 0);
}

/* 16 byte reads through the in-place pointer: each is a BPF_PROBE_MEM load. */
SEC("socket")
int probed_reads(struct __sk_buff *skb)
{
	struct floor_stats *s = stats();
	if (!s)
		return 0;
	const __u8 *b = in_place(skb);
	__u64 a = 0;
#pragma unroll
	for (int i = 0; i < 16; i++)
		a += b[i * 3 + 1];
	s->l3[0].packets += a;
	return -1;
}

/* The same 16 reads from a map value: plain loads. */
SEC("socket")
int plain_reads(struct __sk_buff *skb)
{
	struct floor_stats *s = stats();
	if (!s)
		return 0;
	const __u8 *b = s->bytes;
	__u64 a = 0;
#pragma unroll
	for (int i = 0; i < 16; i++)
		a += b[i * 3 + 1];
	s->l3[0].packets += a;
	return -1;
}

/* 4 LD_ABS byte loads: each becomes a helper call. */
SEC("socket")
int ld_abs_reads(struct __sk_buff *skb)
{
	__u64 a = 0;
#pragma unroll
	for (int i = 0; i < 4; i++)
		a += load_byte(skb, i * 3 + 1);
	return a ? -1 : 0;
}

/* A dynptr slice of the first 64 bytes (two kfunc calls), then the 16
 * reads as plain loads. */
SEC("socket")
int dynptr_reads(struct __sk_buff *skb)
{
	struct floor_stats *s = stats();
	if (!s)
		return 0;
	struct bpf_dynptr dp;
	__u8 buf[64];
	if (bpf_dynptr_from_skb(skb, 0, &dp))
		return 0;
	const __u8 *b = bpf_dynptr_slice(&dp, 0, buf, sizeof(buf));
	if (!b)
		return 0;
	__u64 a = 0;
#pragma unroll
	for (int i = 0; i < 16; i++)
		a += b[i * 3 + 1];
	s->l3[0].packets += a;
	return -1;
}

static __always_inline void count(struct counter *c, __u32 len)
{
	c->packets++;
	c->bytes += len;
}

/* The hand-written program: checked says whether reads are bounded by the
 * linear length, as any correct program must; unchecked it assumes 64. */
static __always_inline int by_hand(struct __sk_buff *skb, const int filter, const int checked)
{
	struct floor_stats *s = stats();
	if (!s)
		return 0;
	__u32 len = skb->len;
	struct sk_buff *k = bpf_cast_to_kern_ctx(skb);
	__u32 avail = len - k->data_len;
	if (checked) {
		if (avail < (len < 128 ? len : 128))
			return -1;
	} else if (avail < 64) {
		return -1;
	}
	const __u8 *b = bpf_rdonly_cast(k->data, 0);
	__u16 proto = bpf_ntohs(skb->protocol);
	int l3 = 3, l4 = 3, ipproto = -1;
	__u32 th = 0;
	if (proto == 0x0800 && (!checked || 34 <= avail)) {
		l3 = 0;
		__u8 vihl = b[14];
		__u16 frag = bpf_ntohs(*(const __u16 *)(b + 20));
		ipproto = b[23];
		__u32 ihl = (vihl & 0xf) * 4;
		if (ihl >= 20 && !(frag & 0x1fff))
			th = 14 + ihl;
	} else if (proto == 0x86dd) {
		l3 = 1;
	} else if (proto == 0x0806) {
		l3 = 2;
	}
	if (ipproto == 6) {
		l4 = 0;
		if (th && (checked ? th + 14 <= avail : th <= 40 - 14)) {
			__u8 fl = b[th + 13];
			if (fl & 2)
				count(&s->syn, len);
			if (fl & 4)
				count(&s->rst, len);
			if (fl & 1)
				count(&s->fin, len);
		}
	} else if (ipproto == 17) {
		l4 = 1;
	} else if (ipproto == 1) {
		l4 = 2;
	}
	count(&s->l3[l3], len);
	count(&s->l4[l4], len);
	if (!filter)
		return -1;
	volatile const __u8 *v = b;
	if (checked && avail < 34)
		goto reject;
	if (bpf_ntohs(*(volatile const __u16 *)(v + 12)) != 0x800)
		goto reject;
	if (v[23] != 6)
		goto reject;
	if (bpf_ntohs(*(volatile const __u16 *)(v + 20)) & 0x1fff)
		goto reject;
	__u32 x = (v[14] & 0xf) * 4;
	if (checked ? x + 18 > avail : x > 26)
		goto reject;
	__u16 sp = bpf_ntohs(*(volatile const __u16 *)(v + x + 14));
	if (sp != 80 && bpf_ntohs(*(volatile const __u16 *)(v + x + 16)) != 80)
		goto reject;
	if (bpf_ntohl(*(volatile const __u32 *)(v + 26)) != 0xc6120001 &&
	    bpf_ntohl(*(volatile const __u32 *)(v + 30)) != 0xc6120001)
		goto reject;
	if (bpf_ntohs(*(volatile const __u16 *)(v + x + 14)) == 22)
		goto reject;
	if (bpf_ntohs(*(volatile const __u16 *)(v + x + 16)) == 22)
		goto reject;
	if (len <= 60)
		goto reject;
	return 262144;
reject:
	count(&s->filtered_out, len);
	return 0;
}

SEC("socket")
int by_hand_count(struct __sk_buff *skb)
{
	return by_hand(skb, 0, 1);
}

SEC("socket")
int by_hand_filter(struct __sk_buff *skb)
{
	return by_hand(skb, 1, 1);
}

SEC("socket")
int by_hand_filter_unchecked(struct __sk_buff *skb)
{
	return by_hand(skb, 1, 0);
}
