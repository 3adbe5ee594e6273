// Package statfile parses cgroup attribute files: pure functions over the
// bytes a read returned, shared by every driver.
//
// Forms:
//   - single values: ParseUint ("123"), ParseInt ("-1" in
//     cpu.cfs_quota_us), ParseLimit ("max" is Max), ParseUints
//     (cpuacct.usage_percpu);
//   - flat keyed, "KEY VALUE" per line (memory.stat, cpu.stat,
//     memory.events, memory.oom_control, pids.events, cpuacct.stat):
//     ScanFlat, and ParseFlat for a map;
//   - nested keyed, "KEY F=V F=V" (io.stat, io.max): ScanNested;
//   - v1 blkio statistics, "MAJOR:MINOR Op VALUE" closed by "Total N":
//     ScanBlkio and ParseBlkio; per-device settings "MAJOR:MINOR VALUE":
//     ParseDeviceValues;
//   - pressure (PSI) files: ParsePSI, into semantic.Pressure;
//   - v1 devices.list: ParseDevicesList, into semantic.DeviceRule values;
//   - cpuacct.usage_all: ScanCpuacctUsageAll, and ParseCpuacctUsageAll
//     for a slice.
//
// The Scan functions call back with slices that alias the input and do
// not allocate (compare a key with string(key)), because stats are read
// in loops. ScanFlat and ScanBlkio read a line in the form the kernel
// writes it in one pass, digits accumulated as they are met; any other
// line goes field by field, to the same result (the fuzz targets hold
// the two paths equal). Every error wraps ErrFormat and names the line.
// The package does no I/O; the fuzz targets check that nothing it
// accepts is malformed.
package statfile
