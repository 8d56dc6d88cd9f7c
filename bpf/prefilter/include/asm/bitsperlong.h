/* Arch-independent stand-in for the <asm/bitsperlong.h> of linux-libc-dev, which
 * Debian installs per architecture; BPF has none of its own. */
#include <asm-generic/bitsperlong.h>
