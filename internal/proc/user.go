package proc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// User is whom a child runs as (Spec.User): a user and its primary group.
// LookupUser resolves one; a worker does so once, at start.
type User struct {
	Name     string   // the user's name
	UID, GID uint32   // the user and its primary group
	Groups   []uint32 // its supplementary groups, from the group database
	Home     string   // HOME for its processes; LookupUser gives the passwd entry's
}

// LookupUser resolves a user name, or a uid given in digits, through the
// user database (os/user).
func LookupUser(nameOrUID string) (*User, error) {
	var u *user.User
	var err error
	if _, nerr := strconv.ParseUint(nameOrUID, 10, 32); nerr == nil {
		u, err = user.LookupId(nameOrUID)
	} else {
		u, err = user.Lookup(nameOrUID)
	}
	var unknownName user.UnknownUserError
	var unknownID user.UnknownUserIdError
	if errors.As(err, &unknownName) || errors.As(err, &unknownID) {
		return nil, errors.New("no user by that name or uid on this host")
	}
	if err != nil {
		return nil, err
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("user %s has a uid or gid that is not a number (%s:%s)", u.Username, u.Uid, u.Gid)
	}
	out := &User{Name: u.Username, UID: uint32(uid), GID: uint32(gid), Home: u.HomeDir}
	ids, err := u.GroupIds()
	if err != nil {
		return nil, fmt.Errorf("groups of user %s: %w", u.Username, err)
	}
	for _, id := range ids {
		if g, err := strconv.ParseUint(id, 10, 32); err == nil {
			out.Groups = append(out.Groups, uint32(g))
		}
	}
	return out, nil
}

// credential switches a child to u. The supplementary groups are set to
// u's own only by a root worker: without that, the child would keep root's
// (group 0 among them). A worker that is not root may not set them and
// runs children as itself anyway (see tasks.BuildUser), so its children
// keep its groups.
func (u *User) credential() *syscall.Credential {
	return &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: u.Groups, NoSetGroups: os.Geteuid() != 0}
}

// Chown gives the tree at root to u (its user and primary group): every
// directory, file and symlink in it, never what a symlink points to.
//
// A build running as u may be running already in trees u owns, and may know
// this tree's path, so the walk gives it no chance to redirect a chown to a
// file outside: it goes through directory descriptors opened without
// following symlinks, and gives a directory away only after everything in
// it, so while the walk reads a directory nobody but its owner can rename or
// replace what is in it. A file with more than one hard link is left as it
// is: another of its names may be outside the tree.
func (u *User) Chown(root string) error {
	root = filepath.Clean(root)
	dfd, err := unix.Open(filepath.Dir(root), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "chown", Path: root, Err: err}
	}
	defer unix.Close(dfd)
	return u.chownAt(dfd, filepath.Base(root), root)
}

// chownAt gives name, in the directory dirfd, to u: a directory after its
// contents. path names it in errors.
func (u *User) chownAt(dirfd int, name, path string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &fs.PathError{Op: "chown", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		if st.Nlink > 1 {
			return nil
		}
		if err := unix.Fchownat(dirfd, name, int(u.UID), int(u.GID), unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &fs.PathError{Op: "chown", Path: path, Err: err}
		}
		return nil
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "chown", Path: path, Err: err}
	}
	d := os.NewFile(uintptr(fd), path) // closes fd
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := u.chownAt(fd, n, filepath.Join(path, n)); err != nil {
			return err
		}
	}
	if err := unix.Fchown(fd, int(u.UID), int(u.GID)); err != nil {
		return &fs.PathError{Op: "chown", Path: path, Err: err}
	}
	return nil
}
