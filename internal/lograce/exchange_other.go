//go:build !linux

package lograce

import "errors"

// exchange swaps two names in one call: Linux only (renameat2).
func exchange(a, b string) error { return errors.ErrUnsupported }
