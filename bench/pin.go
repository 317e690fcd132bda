package bench

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

// pinnedEnv marks a process PinSelf has re-executed, so that it never
// re-executes twice (if the kernel or a cgroup narrowed the CPU set, the
// affinity may still differ from the one asked for).
const pinnedEnv = "SLUICE_BENCH_PINNED"

// PinSelf makes the calling program run on cpus (a taskset CPU list) by
// re-executing it under `taskset -c cpus` with the same arguments, unless
// it already runs there or was re-executed once. On success the re-exec
// does not return; a nil error means no re-exec was needed.
//
// The Go runtime sizes GOMAXPROCS from the affinity at start-up, which is
// why the whole process is re-executed rather than its threads pinned.
func PinSelf(cpus string) error {
	if os.Getenv(pinnedEnv) != "" {
		return nil
	}
	if cur, err := statusField(0, "Cpus_allowed_list"); err == nil && cur == cpus {
		return nil
	}
	taskset, err := exec.LookPath("taskset")
	if err != nil {
		return fmt.Errorf("pin the load generator: %w", err)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("pin the load generator: %w", err)
	}
	argv := append([]string{"taskset", "-c", cpus, exe}, os.Args[1:]...)
	env := append(os.Environ(), pinnedEnv+"="+cpus)
	if err := syscall.Exec(taskset, argv, env); err != nil {
		return fmt.Errorf("pin the load generator: exec taskset: %w", err)
	}
	return nil // not reached
}
