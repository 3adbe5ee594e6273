package semantic

import (
	"strconv"
	"strings"
)

// ParseIOLimit parses a per-device IO throttle as users type it:
//
//	8:0:rbps=10M,wiops=100
//	/dev/sda:wbps=1G
//
// The device is MAJOR:MINOR or a block device node (stat'ed now). Keys are
// rbps and wbps (bytes per second, ParseBytes syntax) and riops and wiops
// (IOs per second); "max" or 0 means no limit for that figure.
func ParseIOLimit(s string) (IOLimit, error) {
	eq := strings.IndexByte(s, '=')
	if eq < 0 {
		return IOLimit{}, invalidf("IO limit %q: want DEVICE:KEY=VALUE[,KEY=VALUE...] with keys rbps, wbps, riops, wiops", s)
	}
	colon := strings.LastIndexByte(s[:eq], ':')
	if colon <= 0 {
		return IOLimit{}, invalidf("IO limit %q: missing DEVICE: before the limits", s)
	}
	dev, list := s[:colon], s[colon+1:]
	var l IOLimit
	if strings.HasPrefix(dev, "/") {
		typ, maj, min, err := StatDevice(dev)
		if err != nil {
			return IOLimit{}, err
		}
		if typ != BlockDevice {
			return IOLimit{}, invalidf("IO limit %q: %q is not a block device", s, dev)
		}
		l.Major, l.Minor = maj, min
	} else {
		maj, min, ok := strings.Cut(dev, ":")
		var err1, err2 error
		l.Major, err1 = parseDevNum(maj, MaxMajor)
		l.Minor, err2 = parseDevNum(min, MaxMinor)
		if !ok || err1 != nil || err2 != nil || l.Major == Wildcard || l.Minor == Wildcard {
			return IOLimit{}, invalidf("IO limit %q: device %q is not MAJOR:MINOR or a /dev path", s, dev)
		}
	}
	seen := map[string]bool{}
	for kv := range strings.SplitSeq(list, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return IOLimit{}, invalidf("IO limit %q: %q is not KEY=VALUE", s, kv)
		}
		if seen[k] {
			return IOLimit{}, invalidf("IO limit %q: %s given twice", s, k)
		}
		seen[k] = true
		var dst *uint64
		switch k {
		case "rbps":
			dst = &l.ReadBPS
		case "wbps":
			dst = &l.WriteBPS
		case "riops":
			dst = &l.ReadIOPS
		case "wiops":
			dst = &l.WriteIOPS
		default:
			return IOLimit{}, invalidf("IO limit %q: unknown key %q; want rbps, wbps, riops or wiops", s, k)
		}
		n, err := parseRate(k, v)
		if err != nil {
			return IOLimit{}, invalidf("IO limit %q: %v", s, err)
		}
		*dst = n
	}
	return l, nil
}

func parseRate(key, v string) (uint64, error) {
	if v == "max" {
		return 0, nil
	}
	if strings.HasSuffix(key, "bps") {
		b, err := ParseBytes(v)
		if b.IsUnlimited() {
			// "infinity" is no limit, which an IOLimit spells 0.
			b = 0
		}
		return uint64(b), err
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n == Unlimited {
		return 0, invalidf("%s %q: want a whole number of IOs per second or max", key, v)
	}
	return n, nil
}

// ParseHugeTLB parses "2MiB=1GiB": a huge page size and a limit in bytes.
func ParseHugeTLB(s string) (HugeTLBLimit, error) {
	size, limit, ok := strings.Cut(s, "=")
	if !ok {
		return HugeTLBLimit{}, invalidf("huge page limit %q: want PAGESIZE=LIMIT, e.g. 2MiB=1GiB", s)
	}
	ps, err := ParseBytes(size)
	if err != nil {
		return HugeTLBLimit{}, err
	}
	lim, err := ParseBytes(limit)
	if err != nil {
		return HugeTLBLimit{}, err
	}
	h := HugeTLBLimit{PageSize: ps, Limit: lim}
	if err := (&Resources{HugeTLB: []HugeTLBLimit{h}}).Validate(); err != nil {
		return HugeTLBLimit{}, err
	}
	return h, nil
}
