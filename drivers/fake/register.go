package fake

import (
	"fmt"
	"slices"
	"strings"

	"github.com/cgsem/cgsem/registry"
	"github.com/cgsem/cgsem/semantic"
)

func init() {
	registry.Register(registry.Registration{Name: Name, Priority: 0, Probe: nil, New: open})
}

// open builds the driver from generic options. Settings:
//
//	unsupported  comma-separated features to declare unsupported ("memory.swap,freeze")
//	pagesize     the page size memory limits round to ("4096", "64KiB")
func open(opts semantic.Options) (semantic.Driver, error) {
	o := Options{Options: opts}
	for k, v := range opts.Settings {
		switch k {
		case "unsupported":
			for f := range strings.SplitSeq(v, ",") {
				f = strings.TrimSpace(f)
				if f == "" {
					continue
				}
				if !slices.Contains(semantic.AllFeatures(), semantic.Feature(f)) {
					return nil, settingErr(k, v, fmt.Errorf("unknown feature %q", f))
				}
				o.Unsupported = append(o.Unsupported, semantic.Feature(f))
			}
		case "pagesize":
			b, err := semantic.ParseBytes(v)
			if err != nil {
				return nil, settingErr(k, v, err)
			}
			if b == 0 || b.IsUnlimited() || b&(b-1) != 0 {
				return nil, settingErr(k, v, fmt.Errorf("not a power of two"))
			}
			o.PageSize = uint64(b)
		default:
			return nil, settingErr(k, v, fmt.Errorf("unknown setting; the fake driver takes \"unsupported\" and \"pagesize\""))
		}
	}
	return New(o), nil
}

func settingErr(k, v string, err error) error {
	return &semantic.Error{Driver: Name, Op: "open", Group: fmt.Sprintf("setting %s=%q", k, v), Kind: semantic.ErrInvalid, Err: err}
}
