/* Arch-independent stand-in for the <asm/swab.h> of linux-libc-dev, which
 * Debian installs per architecture; BPF has none of its own. */
#include <asm-generic/swab.h>
