// Package hostinfo answers questions about the host cgsem runs on that
// several packages ask (the drivers' probes, the test gates), so that
// they all answer alike. Each is a function of a root directory, the
// host's being "/": tests pass a fake tree made in t.TempDir().
//
//	if ok, why := hostinfo.Systemd("/"); ok {
//		// systemd is PID 1 and booted this host; it owns the cgroup tree
//	} else {
//		log.Println("not a systemd host:", why)
//	}
package hostinfo
