//go:build ignore

// SPDX-License-Identifier: (MIT OR GPL-2.0-only)
//
// sonde's eBPF socket prefilter: attached with SO_ATTACH_BPF to every capture
// socket of one interface. For each packet the socket sees it
//   1. counts it by class (L3, L4, TCP flags) before any filtering,
//   2. runs the user's filter (user_filter below, whose body the Go side
//      replaces with the user's classic BPF program translated to eBPF),
//   3. optionally keeps only the first packets/bytes of each flow,
//   4. optionally samples 1 in N of what passed,
// and returns how many bytes to keep, so the kernel truncates before copying.
//
// It is built once for each combination of the three switches (read in place
// or from a copy, flow cutoff, sampling; see the VARIANT list at the end), so
// that what a configuration leaves out is not compiled in at all: tests of
// runtime constants alone, which the verifier removes, still left clang
// keeping registers and stack for the code behind them (~1 ns per packet).
// The Go side loads only the variant its configuration needs.
//
// Socket filters have no direct packet access, and every helper call (an
// LD_ABS/LD_IND is one, bpf_skb_load_bytes another) costs ~10 ns on hosts
// with return-stack mitigations. So where the kernel allows it (direct)
// the program reads the skb's linear data in place: bpf_cast_to_kern_ctx gives
// the struct sk_buff, bpf_rdonly_cast(skb->data, 0) a read-only untrusted
// pointer whose loads are exception-protected (BPF_PROBE_MEM), and every read
// is bounded here by the linear length, as the kernel's own classic-filter
// converter bounds its direct loads by the head length. Packets whose first
// CACHE_LEN bytes are not all linear, and kernels without those kfuncs
// (the variants without direct), get the old path: one bpf_skb_load_bytes of the first
// CACHE_LEN bytes into a per-CPU scratch buffer.
//
// Either way the filter can rely on avail >= min(len, CACHE_LEN) (zero only if
// the copy fails), and translate.go's length check does.
//
// The user's filter is not called: the Go side replaces the call to
// user_filter below with the translated filter itself (see translate.go).

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* Only the fields read here; CO-RE relocates them to the running kernel's. */
struct sk_buff {
	unsigned int data_len;
	unsigned char *data;
} __attribute__((preserve_access_index));

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym __weak;
extern void *bpf_rdonly_cast(const void *obj__ign, __u32 btf_id__k) __ksym __weak;

char __license[] SEC("license") = "Dual MIT/GPL";

#define CACHE_LEN 128 /* keep in sync with cacheLen in translate.go */
#define MAX_VLAN_TAGS 2
#define MAX_IPV6_EXT 4

struct counter {
	__u64 packets;
	__u64 bytes;
};

enum { L3_IPV4, L3_IPV6, L3_ARP, L3_OTHER, L3_N };
enum { L4_TCP, L4_UDP, L4_ICMP, L4_OTHER, L4_N };

/* TCP flag bits of a class: the low three bits of the TCP flags byte. */
enum { CLS_FIN = 1, CLS_SYN = 2, CLS_RST = 4, CLS_FLAGS_N = 8 };

/* Every packet is counted once, in the class slot of its L3 protocol, L4
 * protocol and TCP FIN/SYN/RST bits: one increment of one counter instead
 * of one per class it falls in. The Go side sums slots into the totals per
 * L3 class, per L4 class and per flag; everything seen is the sum of all. */
struct stats {
	struct counter cls[L3_N * L4_N * CLS_FLAGS_N];
	struct counter filtered_out, cut_off, sampled_out;
	__u64 rng; /* this CPU's sampling generator state (xorshift64*) */
};

struct scratch {
	__u8 buf[CACHE_LEN];
};

/* Stack the inlined filter may use (its M[], spills and saved loads), in words; keep in
 * sync with frameWords in translate.go. */
#define FILTER_FRAME_WORDS 24

/* Both directions of a connection share a key: the lower endpoint first. */
struct flow_key {
	__u32 lo_addr[4];
	__u32 hi_addr[4];
	__u16 lo_port;
	__u16 hi_port;
	__u8 proto;
	__u8 family;
	__u8 _pad[2];
};

struct flow_val {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stats);
} stats_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536); /* replaced by Config.MaxFlows */
	__type(key, struct flow_key);
	__type(value, struct flow_val);
} flows SEC(".maps");

/* Set by the Go side before loading (the variant decides whether the cutoff
 * and sampling are on at all). */
volatile const __u32 l2_len = ETH_HLEN;  /* offset of the network header */
volatile const __u64 cutoff_packets = 0; /* 0: no packet limit */
volatile const __u64 cutoff_bytes = 0;   /* 0: no byte limit */
volatile const __u32 sample = 0;         /* keep 1 in sample (> 1) */
volatile const __u32 skip_outgoing = 0;  /* loopback: drop the outgoing copy */

/*
 * user_filter stands for the user's classic BPF program. The Go side replaces
 * the call to it with the translation, inline, and drops this body: on entry
 * R1 = skb, R2 = p (packet bytes), R3 = avail (bytes readable at p) and
 * R4 = frame (stack it may use), and it leaves the verdict, already capped at
 * the snaplen, in R0 and clobbers only R1-R5, as a call would. Without a
 * filter the body is R0 = snaplen. Its body here is opaque asm so that the
 * compiler cannot specialise the call site to the placeholder.
 */
static __attribute__((noinline)) __u32 user_filter(struct __sk_buff *skb, const __u8 *p, __u32 avail,
						   __u64 *frame)
{
	__u32 v = 0;
	asm volatile("%0 = 0xffffffff" : "=r"(v) : "r"(skb), "r"(p), "r"(avail), "r"(frame) : "memory");
	return v;
}

static __always_inline void count(struct counter *c, __u32 len)
{
	c->packets++;
	c->bytes += len;
}

/* The class slot of a packet's L4 protocol and TCP flags (the FIN, SYN and
 * RST bits at th + 13 when the TCP header is known to be there); the caller
 * adds its L3 class. */
static __always_inline __u32 l4_slot(int ipproto, int has_th, __u32 th, const __u8 *b, __u32 n)
{
	if (ipproto == IPPROTO_TCP) {
		__u32 flags = 0;
		if (has_th && th + 14 <= n && th + 14 <= CACHE_LEN)
			flags = b[th + 13] & (CLS_FIN | CLS_SYN | CLS_RST);
		return L4_TCP * CLS_FLAGS_N + flags;
	}
	if (ipproto == IPPROTO_UDP)
		return L4_UDP * CLS_FLAGS_N;
	if (ipproto == IPPROTO_ICMP || ipproto == IPPROTO_ICMPV6)
		return L4_ICMP * CLS_FLAGS_N;
	return L4_OTHER * CLS_FLAGS_N;
}

#define L3_SLOT(l3) ((l3) * L4_N * CLS_FLAGS_N)

static __always_inline __u16 be16_at(const __u8 *b, __u32 off)
{
	return bpf_ntohs(*(const __u16 *)(b + off));
}

/* Orders the two endpoints so both directions give the same key. */
static __always_inline void set_endpoints(struct flow_key *k, const __u32 *a, const __u32 *b,
					  __u16 pa, __u16 pb, int words)
{
	int a_first = 1;
#pragma unroll
	for (int i = 0; i < 4; i++) {
		if (i >= words)
			break;
		if (a[i] != b[i]) {
			a_first = bpf_ntohl(a[i]) < bpf_ntohl(b[i]);
			goto decided;
		}
	}
	a_first = pa <= pb;
decided:
#pragma unroll
	for (int i = 0; i < 4; i++) {
		if (i >= words)
			break;
		k->lo_addr[i] = a_first ? a[i] : b[i];
		k->hi_addr[i] = a_first ? b[i] : a[i];
	}
	k->lo_port = a_first ? pa : pb;
	k->hi_port = a_first ? pb : pa;
}

/* Reports whether this packet is past the flow's cutoff, counting it. */
static __always_inline int past_cutoff(struct flow_key *k, __u32 len)
{
	struct flow_val *v = bpf_map_lookup_elem(&flows, k);
	if (!v) {
		struct flow_val first = {.packets = 1, .bytes = len};
		if (bpf_map_update_elem(&flows, k, &first, BPF_NOEXIST) == 0)
			return 0; /* the first packet of a flow is always kept */
		v = bpf_map_lookup_elem(&flows, k);
		if (!v)
			return 0;
	}
	/* Long flows stop paying for atomics once they are past the cutoff. */
	if (cutoff_packets && v->packets >= cutoff_packets)
		return 1;
	if (cutoff_bytes && v->bytes >= cutoff_bytes)
		return 1;
	__u64 pkts = __sync_fetch_and_add(&v->packets, 1) + 1;
	__u64 before = __sync_fetch_and_add(&v->bytes, len);
	if (cutoff_packets && pkts > cutoff_packets)
		return 1;
	/* A packet is kept while the flow carried fewer than cutoff_bytes before it. */
	if (cutoff_bytes && before >= cutoff_bytes)
		return 1;
	return 0;
}

/* direct: read the linear data in place (kfuncs); cutoff: a flow cutoff
 * (cutoff_packets or cutoff_bytes) is set; sampling: sample > 1. */
static __always_inline int prefilter(struct __sk_buff *skb, const int direct, const int cutoff,
				     const int sampling)
{
	/* On loopback the tap sees each packet twice, going out and coming back
	 * in: only the incoming copy is counted and kept (as libpcap keeps it),
	 * so the outgoing one is neither copied into the ring nor counted. */
	if (skip_outgoing && skb->pkt_type == PACKET_OUTGOING)
		return 0;
	__u32 zero = 0;
	struct stats *st = bpf_map_lookup_elem(&stats_map, &zero);
	if (!st)
		return 0;

	__u32 len = skb->len;
	__u32 n = len < CACHE_LEN ? len : CACHE_LEN; /* what the class parser reads */
	const __u8 *b = 0;
	__u32 avail = 0; /* bytes readable at b */
	int linear = 0;
	if (direct) {
		struct sk_buff *k = bpf_cast_to_kern_ctx(skb);
		avail = len - k->data_len; /* skb->len is k->len, without a probed load */
		if (avail >= n) {
			b = bpf_rdonly_cast(k->data, 0);
			linear = 1;
		}
	}
	if (!linear) {
		/* Not linear that far (or no kfuncs): copy the first n bytes. */
		struct scratch *sc = bpf_map_lookup_elem(&scratch_map, &zero);
		if (!sc)
			return 0;
		avail = 0;
		if (n > 0 && bpf_skb_load_bytes(skb, 0, sc->buf, n) == 0)
			avail = n;
		n = avail;
		b = direct ? bpf_rdonly_cast(sc->buf, 0) : sc->buf;
	}

	/* skb->protocol is the ethertype after any VLAN tag the NIC or the
	 * stack stripped; tags still in the data are skipped here. */
	__u16 proto = bpf_ntohs(skb->protocol);
	__u32 nh = l2_len;
#pragma unroll
	for (int i = 0; i < MAX_VLAN_TAGS; i++) {
		if (proto != ETH_P_8021Q && proto != ETH_P_8021AD)
			break;
		if (nh + 4 > n || nh + 4 > CACHE_LEN) {
			proto = 0;
			break;
		}
		proto = be16_at(b, nh + 2);
		nh += 4;
	}

	__u32 slot = L3_SLOT(L3_OTHER) + L4_OTHER * CLS_FLAGS_N;
	int ipproto = -1;     /* -1: unknown */
	__u32 th = 0;         /* transport header offset, valid when has_th */
	int has_th = 0;       /* first fragment, header offset known */
	struct flow_key key; /* set, and read, only with a cutoff */
	int has_key = 0;

	if (__builtin_expect(proto == ETH_P_IP, 1)) {
		slot = L3_SLOT(L3_IPV4) + L4_OTHER * CLS_FLAGS_N;
		if (nh + 20 <= n && nh + 20 <= CACHE_LEN) {
			/* One load for version/IHL .. fragment offset (bpfel only). */
			__u64 w = *(const __u64 *)(b + nh);
			__u32 ihl = (w & 0xf) * 4;
			ipproto = b[nh + 9];
			int first = (bpf_ntohs((__u16)(w >> 48)) & 0x1fff) == 0;
			if (ihl >= 20 && first) {
				th = nh + ihl;
				has_th = 1;
			}
			slot = L3_SLOT(L3_IPV4) + l4_slot(ipproto, has_th, th, b, n);
			if (cutoff) {
				__builtin_memset(&key, 0, sizeof(key));
				__u32 a[4] = {}, d[4] = {};
				__builtin_memcpy(&a[0], b + nh + 12, 4);
				__builtin_memcpy(&d[0], b + nh + 16, 4);
				__u16 sp = 0, dp = 0;
				if (has_th && (ipproto == IPPROTO_TCP || ipproto == IPPROTO_UDP ||
					       ipproto == IPPROTO_SCTP || ipproto == IPPROTO_UDPLITE) &&
				    th + 4 <= n && th + 4 <= CACHE_LEN) {
					sp = be16_at(b, th);
					dp = be16_at(b, th + 2);
				}
				set_endpoints(&key, a, d, sp, dp, 1);
				key.proto = ipproto;
				key.family = 4;
				has_key = 1;
			}
		} else if (nh + 10 <= n && nh + 10 <= CACHE_LEN) {
			ipproto = b[nh + 9];
			slot = L3_SLOT(L3_IPV4) + l4_slot(ipproto, 0, 0, b, n);
		}
	} else if (proto == ETH_P_IPV6) {
		slot = L3_SLOT(L3_IPV6) + L4_OTHER * CLS_FLAGS_N;
		if (nh + 40 <= n && nh + 40 <= CACHE_LEN) {
			__u32 off = nh + 40;
			int nxt = b[nh + 6];
			int first = 1;
#pragma unroll
			for (int i = 0; i < MAX_IPV6_EXT; i++) {
				if (nxt != IPPROTO_HOPOPTS && nxt != IPPROTO_ROUTING &&
				    nxt != IPPROTO_DSTOPTS && nxt != IPPROTO_FRAGMENT && nxt != IPPROTO_AH)
					break;
				if (off + 8 > n || off + 8 > CACHE_LEN) {
					nxt = -1;
					break;
				}
				int cur = nxt;
				nxt = b[off];
				if (cur == IPPROTO_FRAGMENT) {
					if (be16_at(b, off + 2) & 0xfff8)
						first = 0;
					off += 8;
				} else if (cur == IPPROTO_AH) {
					off += ((__u32)b[off + 1] + 2) * 4;
				} else {
					off += ((__u32)b[off + 1] + 1) * 8;
				}
			}
			if (nxt == IPPROTO_HOPOPTS || nxt == IPPROTO_ROUTING || nxt == IPPROTO_DSTOPTS ||
			    nxt == IPPROTO_FRAGMENT || nxt == IPPROTO_AH)
				nxt = -1; /* more extension headers than we walk */
			ipproto = nxt;
			if (nxt >= 0 && first) {
				th = off;
				has_th = 1;
			}
			slot = L3_SLOT(L3_IPV6) + l4_slot(ipproto, has_th, th, b, n);
			if (cutoff) {
				__builtin_memset(&key, 0, sizeof(key));
				__u32 a[4], d[4];
				__builtin_memcpy(a, b + nh + 8, 16);
				__builtin_memcpy(d, b + nh + 24, 16);
				__u16 sp = 0, dp = 0;
				if (has_th && (ipproto == IPPROTO_TCP || ipproto == IPPROTO_UDP ||
					       ipproto == IPPROTO_SCTP || ipproto == IPPROTO_UDPLITE) &&
				    th + 4 <= n && th + 4 <= CACHE_LEN) {
					sp = be16_at(b, th);
					dp = be16_at(b, th + 2);
				}
				set_endpoints(&key, a, d, sp, dp, 4);
				key.proto = ipproto < 0 ? 255 : ipproto;
				key.family = 6;
				has_key = 1;
			}
		} else if (nh + 7 <= n && nh + 7 <= CACHE_LEN) {
			int nxt = b[nh + 6];
			if (nxt == IPPROTO_TCP || nxt == IPPROTO_UDP || nxt == IPPROTO_ICMPV6)
				ipproto = nxt;
			slot = L3_SLOT(L3_IPV6) + l4_slot(ipproto, 0, 0, b, n);
		}
	} else if (proto == ETH_P_ARP) {
		slot = L3_SLOT(L3_ARP) + L4_OTHER * CLS_FLAGS_N;
	}

	count(&st->cls[slot], len);

	__u64 frame[FILTER_FRAME_WORDS];
	__u32 verdict = user_filter(skb, b, avail, frame);
	if (verdict == 0) {
		count(&st->filtered_out, len);
		return 0;
	}
	if (cutoff && has_key && past_cutoff(&key, len)) {
		count(&st->cut_off, len);
		return 0;
	}
	if (sampling) {
		/* xorshift64* per CPU, seeded once: no helper call per packet. */
		__u64 x = st->rng;
		if (!x)
			x = (__u64)bpf_get_prandom_u32() << 32 | bpf_get_prandom_u32() | 1;
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		st->rng = x;
		if ((((x * 0x2545F4914F6CDD1DULL) >> 32) * sample) >> 32 != 0) {
			count(&st->sampled_out, len);
			return 0;
		}
	}
	return verdict;
}

/* The variants, named prefilter_<direct><cutoff><sampling> with each switch
 * 0 or 1 (see variantName in prefilter.go). */
#define VARIANT(d, c, s)                                                                            \
	SEC("socket") int prefilter_##d##c##s(struct __sk_buff *skb)                                \
	{                                                                                           \
		return prefilter(skb, d, c, s);                                                     \
	}
VARIANT(1, 0, 0)
VARIANT(1, 0, 1)
VARIANT(1, 1, 0)
VARIANT(1, 1, 1)
VARIANT(0, 0, 0)
VARIANT(0, 0, 1)
VARIANT(0, 1, 0)
VARIANT(0, 1, 1)
