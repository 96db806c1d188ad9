package topology

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// startRedis runs a redis-server of the topology's own on a free port. It
// keeps its data in an append-only file in the topology's folder, written
// before each reply and fsynced every second: stage 6's queue lives there,
// and an upload acknowledged with its job queued must survive a restart of
// Redis (a killed process loses nothing acknowledged; only a crash of the
// machine may lose the last second).
func (t *topology) startRedis(ctx context.Context) (string, error) {
	exe, err := exec.LookPath("redis-server")
	if err != nil {
		return "", ErrNoRedisServer
	}
	addr, err := t.ports.take()
	if err != nil {
		return "", err
	}
	t.ports.release(addr)
	_, port, _ := net.SplitHostPort(addr)
	logFile := filepath.Join(t.dir, "redis.log")
	t.redis = newProc("redis-server", t.log, syscall.SIGTERM, func() *exec.Cmd {
		return exec.Command(exe, "--port", port, "--bind", "127.0.0.1", "--save", "",
			"--appendonly", "yes", "--appendfsync", "everysec", "--dir", t.dir, "--logfile", logFile)
	})
	if err := t.redis.start(ctx); err != nil {
		return "", err
	}
	// Ready is a PONG, not an open port: with its append-only file from an
	// earlier run, redis-server accepts connections at once but answers
	// "-LOADING" until the file is read, and an instance that met that
	// answer at its start exited (every instance, at every restart of the
	// topology after the first). A large file takes a while: up to a minute.
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if redisAnswers(addr) {
			return "redis://" + addr + "/0", nil
		}
		if !t.redis.status().Up {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "", fmt.Errorf("topology: redis-server did not start on %s (its log: %s)", addr, logFile)
}

// redisAnswers says whether the Redis at addr answers PING with PONG (not
// with an error such as LOADING).
func redisAnswers(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	reply, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(reply, "+PONG")
}
