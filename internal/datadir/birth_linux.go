package datadir

import (
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// birth is f's birth time, and whether the filesystem keeps one.
func birth(f *os.File) (time.Time, bool) {
	var st unix.Statx_t
	if err := unix.Statx(int(f.Fd()), "", unix.AT_EMPTY_PATH, unix.STATX_BTIME, &st); err != nil || st.Mask&unix.STATX_BTIME == 0 {
		return time.Time{}, false
	}
	return time.Unix(st.Btime.Sec, int64(st.Btime.Nsec)), true
}
