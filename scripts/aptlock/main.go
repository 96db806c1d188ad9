// Command aptlock holds Debian's package locks for a while, the way another
// apt-get (say unattended upgrades) does, so that the project's installs can
// be shown to wait for them (scripts/fresh-machine-ci.sh). apt takes POSIX
// record locks (fcntl), which flock(1) does not conflict with: hence this.
//
//	go run ./scripts/aptlock 60s
package main

import (
	"fmt"
	"os"
	"syscall"
	"time"
)

// The locks apt-get update and apt-get install take.
var locks = []string{
	"/var/lib/dpkg/lock-frontend",
	"/var/lib/dpkg/lock",
	"/var/lib/apt/lists/lock",
	"/var/cache/apt/archives/lock",
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: aptlock DURATION (e.g. 60s)")
		os.Exit(2)
	}
	d, err := time.ParseDuration(os.Args[1])
	if err != nil || d <= 0 {
		fmt.Fprintf(os.Stderr, "aptlock: %q is not a duration (e.g. 60s)\n", os.Args[1])
		os.Exit(2)
	}
	for _, path := range locks {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
		if err != nil {
			fmt.Fprintf(os.Stderr, "aptlock: %v (run as root)\n", err)
			os.Exit(1)
		}
		lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: 0}
		if err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLKW, &lk); err != nil {
			fmt.Fprintf(os.Stderr, "aptlock: lock %s: %v\n", path, err)
			os.Exit(1)
		}
		defer f.Close()
	}
	fmt.Printf("aptlock: holding the package locks for %s (pid %d)\n", d, os.Getpid())
	time.Sleep(d)
}
