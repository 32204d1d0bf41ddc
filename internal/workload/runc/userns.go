package runc

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// UsernsSupported reports whether the kernel lets isolationd give
// containers a user namespace with the mapping of base (nil), or why not.
// Every container shares that one mapping: runc 1.1 cannot idmap mounts,
// so the image layers, unpacked once, are shifted by base for all (runc
// 1.2 would allow a mapping per environment).
func UsernsSupported(base uint32) error {
	if base == 0 {
		return errors.New("a user namespace needs a base other than 0")
	}
	// A child in a new user namespace with the mapping, which then fails
	// to exec on purpose: the clone and the mapping are what is probed,
	// and nothing runs.
	m := []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(base), Size: usernsSize}}
	p, err := os.StartProcess(os.DevNull, []string{"userns-probe"}, &os.ProcAttr{Sys: &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: m,
		GidMappings: m,
	}})
	if err == nil {
		// Unreachable in practice: /dev/null never execs.
		_ = p.Kill()
		_, _ = p.Wait()
		return nil
	}
	if errors.Is(err, syscall.EACCES) {
		return nil // /dev/null cannot be executed: the namespace was made
	}
	return fmt.Errorf("the kernel refuses a user namespace mapping 0-%d to %d: %w", usernsSize-1, base, err)
}
