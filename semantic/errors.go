package semantic

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"syscall"
)

// kind is an error class. A kind matches itself and, where one exists, the
// standard library's equivalent, so errors.Is(err, fs.ErrNotExist) works on
// a cgsem error as it does on an os error.
type kind struct {
	msg string
	std error
}

func (k *kind) Error() string { return k.msg }

func (k *kind) Is(target error) bool { return k.std != nil && target == k.std }

// Error kinds. Every error a driver returns wraps exactly one of them when
// the failure falls in one of these classes; classify with errors.Is.
var (
	// ErrNotExist: the group (or a device node, or a process) does not exist.
	ErrNotExist error = &kind{"does not exist", fs.ErrNotExist}
	// ErrExist: the group already exists.
	ErrExist error = &kind{"already exists", fs.ErrExist}
	// ErrInvalid: a name or value was refused; the message says which and why.
	ErrInvalid error = &kind{"invalid", fs.ErrInvalid}
	// ErrBusy: the group holds processes or children and was not asked to
	// kill or recurse, or the kernel stayed busy.
	ErrBusy error = &kind{"busy", nil}
	// ErrPermission: the caller lacks a permission; the message says which.
	ErrPermission error = &kind{"permission denied", fs.ErrPermission}
	// ErrNotSupported: the driver cannot do this on this host. It also
	// matches errors.ErrUnsupported.
	ErrNotSupported error = &kind{"not supported", errors.ErrUnsupported}
)

// Error is the one error type of cgsem. It carries the operation, the group,
// the driver and the cause; errors.Is matches both its Kind and anything in
// its cause chain (a unix.Errno, context.Canceled, ...).
//
// It reads "cgsem/v2: set memory.max on libvirt/lxc/web1: device or resource busy".
type Error struct {
	Driver string // driver name, "" outside a driver
	Op     string // what was being done: "create", "set memory.max", ...
	Group  string // the group's path, or the input that was refused
	Kind   error  // one of the Err* kinds, or nil
	Err    error  // the cause
}

// Error reads "cgsem/DRIVER: OP on GROUP: CAUSE", leaving out what is empty.
func (e *Error) Error() string {
	prefix := "cgsem"
	if e.Driver != "" {
		prefix += "/" + e.Driver
	}
	msg := prefix + ": " + e.Op
	if e.Group != "" {
		msg += " on " + e.Group
	}
	switch {
	case e.Err != nil:
		msg += ": " + e.Err.Error()
	case e.Kind != nil:
		msg += ": " + e.Kind.Error()
	}
	return msg
}

// Unwrap returns the kind and the cause.
func (e *Error) Unwrap() []error {
	var errs []error
	if e.Kind != nil {
		errs = append(errs, e.Kind)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// Errorf builds an *Error of the given kind whose cause is formatted.
func Errorf(kind error, op, group, format string, args ...any) *Error {
	return &Error{Op: op, Group: group, Kind: kind, Err: fmt.Errorf(format, args...)}
}

// Wrap builds an *Error for cause, classifying it into a kind. It returns
// nil when cause is nil. An *Error cause keeps its own kind, driver and op
// as the cause; the outer error adds context.
func Wrap(driver, op, group string, cause error) error {
	if cause == nil {
		return nil
	}
	return &Error{Driver: driver, Op: op, Group: group, Kind: classify(cause), Err: cause}
}

// Classify returns the kind err belongs to, or nil. It understands cgsem
// kinds, syscall errnos and the fs/context sentinels.
func Classify(err error) error { return classify(err) }

func classify(err error) error {
	for _, k := range []error{ErrNotExist, ErrExist, ErrInvalid, ErrBusy, ErrPermission, ErrNotSupported} {
		if errors.Is(err, k) {
			return k
		}
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		switch errno {
		case syscall.ENOENT, syscall.ESRCH, syscall.ENXIO:
			return ErrNotExist
		case syscall.ENODEV:
			// From a cgroup write, ENODEV means the value names a device
			// the kernel does not have (io.max, blkio.throttle.*).
			return ErrInvalid
		case syscall.EEXIST:
			return ErrExist
		case syscall.EINVAL, syscall.ERANGE, syscall.ENAMETOOLONG:
			return ErrInvalid
		case syscall.EBUSY, syscall.ENOTEMPTY:
			return ErrBusy
		case syscall.EPERM, syscall.EACCES, syscall.EROFS:
			return ErrPermission
		case syscall.ENOTSUP, syscall.ENOSYS:
			return ErrNotSupported
		}
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return ErrNotExist
	case errors.Is(err, fs.ErrExist):
		return ErrExist
	case errors.Is(err, fs.ErrPermission):
		return ErrPermission
	case errors.Is(err, fs.ErrInvalid):
		return ErrInvalid
	case errors.Is(err, errors.ErrUnsupported):
		return ErrNotSupported
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return nil
	}
	return nil
}

func invalidf(format string, args ...any) error {
	for i, a := range args {
		// A nested validation error contributes its reason, not a second
		// "cgsem: validate:" prefix in the middle of the message.
		if e, ok := a.(*Error); ok && e.Op == "validate" && e.Driver == "" && e.Err != nil {
			args[i] = e.Err
		}
	}
	return &Error{Op: "validate", Kind: ErrInvalid, Err: fmt.Errorf(format, args...)}
}

// NotSupported builds the error a driver returns for a field or operation
// it cannot honour: it wraps ErrNotSupported and names the feature.
func NotSupported(driver string, f Feature, why string) error {
	return &Error{Driver: driver, Op: "use " + string(f), Kind: ErrNotSupported, Err: errors.New(why)}
}
