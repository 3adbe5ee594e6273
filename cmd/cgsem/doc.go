// Command cgsem manages Linux control groups by what they mean, through the
// cgsem semantic interface: the same command line works on cgroup v1,
// cgroup v2 and systemd.
//
// Usage:
//
//	cgsem [--driver NAME] [--root PATH|self] [--json] [--log-level LEVEL] [--approximate] [--setting KEY=VALUE] COMMAND [ARGS]
//
// Global flags may also be given after the command ("cgsem show web --json").
//
//	--driver NAME        force a driver (default: $CGSEM_DRIVER, else auto-selection;
//	                     "fake" is the in-memory driver, never auto-selected, whose
//	                     state lives only as long as the process)
//	--root PATH|self     manage groups beneath PATH, or beneath this process's own
//	                     cgroup with "self" (default: $CGSEM_ROOT, else the backend's top)
//	--json               machine-readable output (below)
//	--log-level LEVEL    log to stderr: off (default), error, warn, info, debug, trace
//	                     (trace logs every file write and D-Bus call)
//	--approximate        apply approximate conversions (see a driver's capabilities)
//	                     instead of refusing them with exit code 3
//	--setting KEY=VALUE  a driver-specific setting the driver documents
//	                     (semantic.Options.Settings; the fake takes "unsupported"
//	                     and "pagesize"); repeatable
//
// # Commands
//
//	drivers                          every registered driver, its probe verdict, and
//	                                 which one auto-selection picks and why
//	create PATH [resource flags]     create a group and the missing levels above it
//	set PATH resource flags          change a group's resources, all or nothing
//	show PATH                        settings read back, processes and stats
//	ls [PATH] [-r|--recursive]       the groups below PATH (default: the root)
//	run --path PATH [--rm] [resource flags] [--] CMD [ARGS...]
//	                                 run CMD inside the group (created as needed)
//	attach PATH PID... [--thread]    move processes (or threads) into a group
//	freeze PATH                      stop every process in the group
//	thaw PATH                        resume a frozen group
//	kill PATH                        SIGKILL everything in the group and below
//	rm PATH [--kill] [--recursive]   delete a group
//	plan PATH resource flags         what set would write, changing nothing
//	events PATH                      one line per event until interrupted
//
// "cgsem help COMMAND" or "cgsem COMMAND --help" describes a command.
// Flags may come before, between or after a command's positional
// arguments, except for run, whose flags end at CMD (everything after CMD
// is CMD's own); "--" ends the flags everywhere.
//
// PATH names a group below the driver's root, such as libvirt/lxc/web1,
// without a leading slash; every driver validates it the same way.
//
// # Resource flags
//
// create, set, plan and run take these. A flag not given leaves that
// setting as it is; a flag may be given again to replace its value, except
// the repeatable ones, which add.
//
//	--memory BYTES          hard memory limit (512MiB, 512M, 1.5G, 4096, max);
//	                        limits are rounded down to the page size
//	--memory-high BYTES     throttle limit
//	--memory-low BYTES      best-effort protection
//	--memory-min BYTES      hard protection
//	--swap BYTES            swap allowed in addition to memory
//	--cpu-weight WEIGHT     relative CPU share, 1..10000, default 100
//	--cpus CPUS             bandwidth cap in CPUs (1.5), or max for none
//	--cpu-period PERIOD     period of the cap: a duration (100ms) or microseconds
//	                        (100000); needs --cpus
//	--cpuset LIST           CPUs the group may run on (0-3,7)
//	--mems LIST             memory nodes the group may allocate on
//	--io-weight WEIGHT      relative IO share, 1..10000, default 100
//	--io-limit DEV:KEY=N,...  per-device throttle; DEV is a block device path or
//	                        MAJOR:MINOR; keys rbps, wbps (bytes/s, BYTES syntax),
//	                        riops, wiops; 0 or max for no limit (repeatable)
//	--pids COUNT            most tasks, or max
//	--devices deny|allow    the device policy for devices no rule names
//	--allow-device RULE     allow a device (repeatable)
//	--deny-device RULE      deny a device (repeatable)
//	--hugetlb SIZE=BYTES    huge page limit per page size, 2MiB=1GiB (repeatable)
//
// A device RULE is "c 1:3 rwm", "b *:* r", "a" (every device), a node path
// such as /dev/null (stat'ed now; all access) or /dev/null:rw. The rules
// of --allow-device and --deny-device form one list in the order they are
// given on the command line, and for each of r, w and m the last rule that
// matches a device decides. The list replaces the group's whole device
// list, so rules need --devices to say the default.
//
// A bad value exits with code 2 and a message naming the flag, the value
// and why, before anything is changed.
//
// # Exit codes
//
//	0  success
//	1  failure (anything not below: a group that exists, a permission, ...)
//	2  invalid input or usage (a bad flag, value or path, an unknown driver)
//	3  not supported by this driver on this host (or only approximately, without --approximate)
//	4  no such group (or process, for attach)
//	5  busy: the group holds processes or children (rm without --kill/--recursive)
//
// A driver's error is classified by the kind of the outermost cgsem error
// (see package semantic). A command interrupted by SIGINT or SIGTERM exits
// with 128+N, except events, which exits 0. run exits with its command's
// status, or 128+N if signal N killed the command; before the command
// starts it uses the codes above, and 127 for a command that is not found,
// 126 for one that cannot be executed. With --rm, a failure to remove the
// group is reported and turns a 0 status into its own code.
//
// Errors go to stderr as "cgsem: COMMAND: message"; a driver's error
// names it, as in "cgsem: rm: fake: delete on web: group has 1 child groups; ...".
//
// # JSON output
//
// With --json, show, ls, plan, drivers and events print JSON on stdout;
// the other commands print nothing on success. Field names and meanings
// are stable; new fields may be added. Absent figures are left out, never
// reported as 0. Byte and count limits are numbers, or the string "max"
// for no limit. Durations are integers in nanoseconds.
//
// show:
//
//	{
//	  "driver": "v2",
//	  "path": "web/app",
//	  "processes": [1234, 1240],       // pids in the group itself, sorted
//	  "resources": {                    // settings read back
//	    "memory": {"max": 536870912, "high": "max", "low": 0, "min": 0, "swap": 0},
//	    "cpu": {
//	      "weight": 100,
//	      "max": {"cpus": 1.5, "period": 100000000},   // cpus 0: no cap
//	      "cpus": "0-3", "mems": "0"
//	    },
//	    "io": {"weight": 100, "limits": [{"major": 8, "minor": 0, "rbps": 10485760, "wiops": 100}]},
//	    "pids": {"max": 100},
//	    "devices": {"default": "deny", "rules": [{"allow": true, "rule": "c 1:3 rwm"}]},
//	    "hugetlb": [{"pagesize": 2097152, "limit": 1073741824}]
//	  },
//	  "stats": {
//	    "memory": {"usage": 0, "peak": 0, "anon": 0, "file": 0, "swap": 0, "oom": 0, "oom_kill": 0},
//	    "cpu": {"usage": 0, "user": 0, "system": 0, "periods": 0, "throttled_periods": 0, "throttled_time": 0},
//	    "pids": {"current": 2, "limit": 100},
//	    "io": [{"major": 8, "minor": 0, "rbytes": 0, "wbytes": 0, "rios": 0, "wios": 0}],
//	    "pressure": {
//	      "cpu": {"some": {"avg10": 0.5, "avg60": 0.1, "avg300": 0, "total": 123000}, "full": {...}},
//	      "memory": {...}, "io": {...}
//	    }
//	  }
//	}
//
// In resources an unmanaged or unsupported section or field is left out,
// and so is an empty list (no IO limits, no device rules, no huge page
// limits); the IO limit keys are left out when 0 (no limit), and a device rule's
// "rule" is the kernel's syntax (type, MAJOR:MINOR with * for any, access
// as a subset of rwm). The JSON of resources and stats is that of
// semantic.Resources and semantic.Stats.
//
// ls:
//
//	{"driver": "v2", "path": "", "groups": ["web", "web/app"]}
//
// path is the listed group ("" for the root); groups are full paths below
// the root, children sorted by name, with --recursive parents first.
//
// plan:
//
//	{"driver": "v2", "path": "web", "steps": [
//	  {"action": "write", "target": "memory.max", "value": "536870912", "feature": "memory.max"}]}
//
// steps are in the order the driver would make them; action is "write",
// "mkdir", "attach", "dbus", ... as the driver does it, target the file
// relative to the group or the D-Bus unit/property, feature the semantic
// field served.
//
// drivers:
//
//	{"picked": "v2", "forced": false, "auto": "v2", "verdicts": [
//	  {"name": "systemd", "priority": 30, "ok": false, "reason": "PID 1 is not systemd"},
//	  {"name": "v2", "priority": 20, "ok": true, "reason": "/sys/fs/cgroup is cgroup2"},
//	  {"name": "fake", "priority": 0, "ok": false, "reason": "never auto-selected; force it by name"}]}
//
// picked is the driver a command would use ("" if none); forced says
// --driver or CGSEM_DRIVER chose it; auto is what auto-selection alone
// picks ("" if no probe accepts the host); verdicts lists every registered
// driver in the order auto-selection considers them (priority, then name).
//
// events prints one compact object a line:
//
//	{"kind":"oom_kill","group":"web/app","time":"2025-01-02T15:04:05.123456789Z","count":3}
//
// kind is one of oom, oom_kill, populated, empty, frozen, thawed; count is
// the kernel's cumulative counter where it has one, left out otherwise.
//
// # Examples
//
//	cgsem drivers
//	cgsem create web/app --memory 512MiB --cpus 1.5 --pids 100
//	cgsem set web/app --devices deny --allow-device /dev/null --allow-device "c 1:9 r"
//	cgsem --root self run --path job1 --rm --memory 1G -- make -j8
//	cgsem show web/app --json
//	cgsem rm web --recursive --kill
package main
