/* BPF objects are built little-endian (bpfel) only. */
#include <linux/byteorder/little_endian.h>
