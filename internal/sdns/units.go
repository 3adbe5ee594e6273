package sdns

// BootTarget is the unit systemd boots to inside the container. It pulls in
// sysinit, sockets and the D-Bus system bus, nothing else: no getty, no
// network, no timers, no host services.
const BootTarget = "cgsem-sdns.target"

const bootTargetUnit = `[Unit]
Description=cgsem test container (sysinit, sockets and D-Bus only)
Requires=sysinit.target sockets.target dbus.socket dbus.service
After=sysinit.target sockets.target dbus.socket dbus.service
AllowIsolate=yes
`

// maskedUnits are linked to /dev/null inside the container: units that
// would change host-global state (clock, kernel modules, sysctls, binfmt,
// udev and devices, audit, AppArmor, device mapper), reach the network, or
// only make sense on a real machine. Most are also kept out by read-only
// /proc/sys and /sys or the capability drops; masking keeps the boot quiet
// and fast, and keeps a unit from trying at all.
func maskedUnits() []string {
	return []string{
		// from the measured recipe
		"systemd-timesyncd.service", "systemd-pstore.service", "postgresql.service",
		"e2scrub_reap.service", "systemd-modules-load.service", "systemd-sysctl.service",
		"systemd-binfmt.service", "proc-sys-fs-binfmt_misc.automount", "proc-sys-fs-binfmt_misc.mount",
		"systemd-random-seed.service", "systemd-udevd.service", "systemd-udevd-control.socket",
		"systemd-udevd-kernel.socket", "systemd-udev-trigger.service", "systemd-udev-settle.service",
		"sys-kernel-debug.mount", "sys-kernel-tracing.mount", "sys-kernel-config.mount",
		"sys-fs-fuse-connections.mount", "dev-hugepages.mount", "systemd-firstboot.service",
		"systemd-machine-id-commit.service", "systemd-repart.service", "systemd-hwdb-update.service",
		"ldconfig.service", "systemd-journald-audit.socket", "console-getty.service",
		"getty@tty1.service", "systemd-pcrphase.service", "systemd-pcrphase-sysinit.service",
		"systemd-remount-fs.service", "kmod-static-nodes.service", "systemd-logind.service",
		// host-touching units that other Debian hosts (CI) may enable
		"apparmor.service", "auditd.service", "lvm2-monitor.service", "lvm2-lvmpolld.socket",
		"dm-event.socket", "multipathd.socket", "multipathd.service", "iscsid.socket",
		"systemd-networkd.service", "systemd-networkd.socket", "systemd-resolved.service",
		"systemd-fsck-root.service", "systemd-quotacheck.service", "quotaon.service",
		"systemd-rfkill.socket", "systemd-boot-system-token.service", "systemd-boot-update.service",
		"systemd-hibernate-resume@.service", "keyboard-setup.service", "console-setup.service",
		"setvtrgb.service", "cryptsetup.target", "veritysetup.target", "integritysetup.target",
	}
}

// emptiedFiles are configuration files that generators turn into units
// touching host devices; inside they are empty.
func emptiedFiles() []string {
	return []string{"/etc/fstab", "/etc/crypttab", "/etc/veritytab", "/etc/integritytab"}
}

// dropCapabilities are removed from the bounding set of the container's
// PID 1 (and so from every process inside): setting the clock, loading
// kernel modules, setting wake alarms and reading or clearing the kernel
// log reach the whole host, not the namespaces.
func dropCapabilities() []int {
	return []int{
		25, // CAP_SYS_TIME
		16, // CAP_SYS_MODULE
		35, // CAP_WAKE_ALARM
		34, // CAP_SYSLOG
	}
}
