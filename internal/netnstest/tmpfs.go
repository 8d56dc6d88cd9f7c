package netnstest

import (
	"fmt"
	"os/exec"
	"testing"
)

// TmpFS mounts a tmpfs of the given size (a mount size option such as "4m")
// on a fresh temporary directory and unmounts it in t.Cleanup. Namespaces
// entered with `ip netns exec` see it too.
func TmpFS(t testing.TB, size string) string {
	t.Helper()
	Root(t)
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0755", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mounting tmpfs on %s: %v: %s", dir, err, out)
	}
	// Registered after TempDir's cleanup, so it runs first (LIFO).
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("%v", fmt.Errorf("unmounting tmpfs %s: %w: %s", dir, err, out))
		}
	})
	return dir
}
