// Package probe proves the VM lane of test/vm: its tests run only inside
// the throwaway VM (CGSEM_VM=1, set by test/vm/vminit) and check that the
// guest is what the lane promises cgsem's drivers: cgroup2 alone at
// /sys/fs/cgroup with the memory, cpu, io and pids controllers, and limits
// that the kernel enforces (a hog past memory.max is OOM-killed and
// counted, a fork past pids.max fails). Elsewhere they skip with that
// reason. Run them with
//
//	test/vm/lane.sh ./test/vm/probe
package probe
