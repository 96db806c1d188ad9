package scalemodel

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ListenerPID finds the process on this machine that listens on a TCP port
// (network "tcp") or a unix socket path (network "unix"): the postmaster
// behind DATABASE_URL, a redis-server behind REDIS_URL, so the model can put
// a server it did not start into its host. It reads /proc/net and the
// processes' descriptors (root reads them all).
func ListenerPID(network, address string) (int, error) {
	inodes, err := listenInodes(network, address)
	if err != nil {
		return 0, err
	}
	if len(inodes) == 0 {
		return 0, fmt.Errorf("scalemodel: nothing on this machine listens on %s %s", network, address)
	}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		fds, _ := os.ReadDir(filepath.Join("/proc", p.Name(), "fd"))
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join("/proc", p.Name(), "fd", fd.Name()))
			if err == nil && inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("scalemodel: no process holds the socket listening on %s %s", network, address)
}

// listenInodes returns the inodes of the listening sockets on a TCP port (any
// local address, IPv4 or IPv6) or a unix path.
func listenInodes(network, address string) (map[string]bool, error) {
	found := map[string]bool{}
	switch network {
	case "tcp":
		port, err := strconv.Atoi(address)
		if err != nil {
			return nil, fmt.Errorf("scalemodel: port %q: %w", address, err)
		}
		want := fmt.Sprintf(":%04X", port)
		for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			for _, line := range strings.Split(string(b), "\n")[1:] {
				// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
				fs := strings.Fields(line)
				if len(fs) > 9 && strings.HasSuffix(fs[1], want) && fs[3] == "0A" { // 0A: LISTEN
					found[fs[9]] = true
				}
			}
		}
	case "unix":
		b, err := os.ReadFile("/proc/net/unix")
		if err != nil {
			return nil, fmt.Errorf("scalemodel: %w", err)
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			// Num RefCount Protocol Flags Type St Inode Path; flags 00010000: listening
			fs := strings.Fields(line)
			if len(fs) > 7 && fs[7] == address && fs[3] == "00010000" {
				found[fs[6]] = true
			}
		}
	default:
		return nil, fmt.Errorf("scalemodel: network %q: want tcp or unix", network)
	}
	return found, nil
}
