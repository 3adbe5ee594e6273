//go:build !bench_nosystemd

package main

// The systemd driver is imported from a file of its own so that a build
// with -tags bench_nosystemd leaves it out while it does not compile; its
// rows then read "not built yet".
import _ "github.com/cgsem/cgsem/drivers/systemd"
