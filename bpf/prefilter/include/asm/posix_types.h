/* Arch-independent stand-in for the <asm/posix_types.h> of linux-libc-dev, which
 * Debian installs per architecture; BPF has none of its own. */
#include <asm-generic/posix_types.h>
