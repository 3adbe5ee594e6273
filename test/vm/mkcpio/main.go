//go:build linux

// Command mkcpio writes a Linux initramfs: a "newc" cpio archive, built from
// a list in the syntax of the kernel's usr/gen_init_cpio, read from stdin:
//
//	dir   <name> <mode> <uid> <gid>
//	file  <name> <source> <mode> <uid> <gid>
//	nod   <name> <mode> <uid> <gid> <c|b> <major> <minor>
//	slink <name> <target> <mode> <uid> <gid>
//
// Modes are octal. Blank lines and lines starting with # are ignored. The
// archive goes to the file named by -o (default stdout). It needs no root,
// no mknod and no cpio(1): device nodes exist only inside the archive, and
// every timestamp is zero so the same inputs give the same bytes.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// newc header field order, after the 6-byte magic "070701"; every field is
// 8 hex digits.
type header struct {
	ino, mode, uid, gid, nlink, mtime, size  uint32
	devMajor, devMinor, rdevMajor, rdevMinor uint32
	nameSize, check                          uint32
}

const (
	typeDir  = 0o040000
	typeFile = 0o100000
	typeChr  = 0o020000
	typeBlk  = 0o060000
	typeLink = 0o120000
)

type writer struct {
	w   *bufio.Writer
	ino uint32
	off int64
}

func (a *writer) write(p []byte) error {
	n, err := a.w.Write(p)
	a.off += int64(n)
	return err
}

// pad aligns the stream to 4 bytes, as newc requires after the name and
// after the data.
func (a *writer) pad() error {
	if r := a.off % 4; r != 0 {
		return a.write(make([]byte, 4-r))
	}
	return nil
}

func (a *writer) entry(name string, h header, data io.Reader) error {
	a.ino++
	h.ino = a.ino
	h.nlink = 1
	if h.mode&0o170000 == typeDir {
		h.nlink = 2
	}
	h.nameSize = uint32(len(name) + 1)
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		h.ino, h.mode, h.uid, h.gid, h.nlink, h.mtime, h.size,
		h.devMajor, h.devMinor, h.rdevMajor, h.rdevMinor, h.nameSize, h.check)
	if err := a.write([]byte(hdr + name + "\x00")); err != nil {
		return err
	}
	if err := a.pad(); err != nil {
		return err
	}
	if data != nil {
		n, err := io.Copy(a.w, data)
		a.off += n
		if err != nil {
			return err
		}
		if n != int64(h.size) {
			return fmt.Errorf("%s: size changed while archiving (%d, then %d bytes)", name, h.size, n)
		}
	}
	return a.pad()
}

func parseMode(s string) (uint32, error) {
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || v > 0o7777 {
		return 0, fmt.Errorf("bad mode %q", s)
	}
	return uint32(v), nil
}

func parseID(s string) (uint32, error) {
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("bad number %q", s)
	}
	return uint32(v), nil
}

// parseFields turns the mode, uid and gid columns into a header.
func parseFields(kind uint32, mode, uid, gid string) (header, error) {
	var h header
	m, err := parseMode(mode)
	if err != nil {
		return h, err
	}
	if h.uid, err = parseID(uid); err != nil {
		return h, err
	}
	if h.gid, err = parseID(gid); err != nil {
		return h, err
	}
	h.mode = kind | m
	return h, nil
}

func (a *writer) line(f []string) error {
	want := map[string]int{"dir": 5, "file": 6, "nod": 8, "slink": 6}
	n, ok := want[f[0]]
	if !ok {
		return fmt.Errorf("unknown entry type %q", f[0])
	}
	if len(f) != n {
		return fmt.Errorf("%s needs %d fields, got %d", f[0], n, len(f))
	}
	// The kernel unpacks names relative to its rootfs; a leading slash is
	// tolerated in the list but not stored.
	name := strings.TrimPrefix(f[1], "/")
	switch f[0] {
	case "dir":
		h, err := parseFields(typeDir, f[2], f[3], f[4])
		if err != nil {
			return err
		}
		return a.entry(name, h, nil)
	case "file":
		h, err := parseFields(typeFile, f[3], f[4], f[5])
		if err != nil {
			return err
		}
		src, err := os.Open(f[2])
		if err != nil {
			return err
		}
		defer src.Close()
		st, err := src.Stat()
		if err != nil {
			return err
		}
		if !st.Mode().IsRegular() || st.Size() >= 1<<32 {
			return fmt.Errorf("%s: not a regular file below 4 GiB", f[2])
		}
		h.size = uint32(st.Size())
		return a.entry(name, h, src)
	case "nod":
		kind := uint32(typeChr)
		switch f[5] {
		case "c":
		case "b":
			kind = typeBlk
		default:
			return fmt.Errorf("device type %q is neither c nor b", f[5])
		}
		h, err := parseFields(kind, f[2], f[3], f[4])
		if err != nil {
			return err
		}
		if h.rdevMajor, err = parseID(f[6]); err != nil {
			return err
		}
		if h.rdevMinor, err = parseID(f[7]); err != nil {
			return err
		}
		return a.entry(name, h, nil)
	default: // slink
		h, err := parseFields(typeLink, f[3], f[4], f[5])
		if err != nil {
			return err
		}
		h.size = uint32(len(f[2]))
		return a.entry(name, h, strings.NewReader(f[2]))
	}
}

func run(in io.Reader, out io.Writer) error {
	a := &writer{w: bufio.NewWriterSize(out, 1<<20)}
	sc := bufio.NewScanner(in)
	for lineNo := 1; sc.Scan(); lineNo++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if err := a.line(f); err != nil {
			return fmt.Errorf("line %d: %w", lineNo, err)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if err := a.entry("TRAILER!!!", header{}, nil); err != nil {
		return err
	}
	return a.w.Flush()
}

func main() {
	outPath := flag.String("o", "", "write the archive to this file instead of stdout")
	flag.Parse()
	out := os.Stdout
	if *outPath != "" {
		f, err := os.Create(*outPath)
		if err != nil {
			fmt.Fprintln(os.Stderr, "mkcpio:", err)
			os.Exit(1)
		}
		out = f
	}
	err := run(os.Stdin, out)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkcpio:", err)
		if *outPath != "" {
			os.Remove(*outPath)
		}
		os.Exit(1)
	}
}
