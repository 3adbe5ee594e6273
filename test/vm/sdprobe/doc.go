// Package sdprobe proves the systemd mode of the VM lane of test/vm: its
// tests run only inside the throwaway VM booted with systemd as PID 1
// (CGSEM_VM=1 and CGSEM_VM_SYSTEMD=1, set by the lane's runner) and check
// what the systemd driver's tests rely on there: systemd is PID 1 on a
// pure cgroup v2 hierarchy, the system bus answers for it, and the limits
// of a transient scope made over D-Bus are enforced by the kernel (a hog
// past MemoryMax is OOM-killed and counted in the scope's memory.events,
// a fork past TasksMax fails), and the scope goes without a trace when
// stopped. Elsewhere they skip with that reason. Run them with
//
//	test/vm/lane.sh --systemd ./test/vm/sdprobe
package sdprobe
