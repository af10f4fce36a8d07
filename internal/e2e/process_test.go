package e2e

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Bounds of the test's waits: safety nets against hangs, not speed checks.
const (
	startLimit = 60 * time.Second
	stopLimit  = 30 * time.Second
)

// process is a running herald.
type process struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{}
	err    error // of Wait, once done is closed
}

// startHerald starts the binary with args; see startHeraldEnv.
func startHerald(t *testing.T, args ...string) *process {
	t.Helper()
	return startHeraldEnv(t, nil, args...)
}

// startHeraldEnv starts the binary with args and an environment of env,
// PATH and HOME only, and kills it at the end of the test if it still runs.
func startHeraldEnv(t *testing.T, env []string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(heraldBin, args...)
	cmd.Env = append([]string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir()}, env...)
	p := &process{cmd: cmd, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout = p.stderr
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("herald %s output:\n%s", strings.Join(args, " "), p.stderr.String())
		}
	})
	return p
}

// waitReady polls url/readyz until it answers 200.
func (p *process) waitReady(t *testing.T, client *http.Client, url string) {
	t.Helper()
	deadline := time.Now().Add(startLimit)
	for {
		select {
		case <-p.done:
			t.Fatalf("herald exited before it was ready: %v\n%s", p.err, p.stderr.String())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/readyz", nil)
		resp, err := client.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				cancel()
				return
			}
		}
		cancel()
		if time.Now().After(deadline) {
			t.Fatalf("herald not ready after %s (last: %v)\n%s", startLimit, err, p.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitLog waits until the process has logged text.
func (p *process) waitLog(t *testing.T, text string) {
	t.Helper()
	deadline := time.Now().Add(startLimit)
	for !strings.Contains(p.stderr.String(), text) {
		select {
		case <-p.done:
			t.Fatalf("herald exited before logging %q: %v\n%s", text, p.err, p.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("herald did not log %q within %s\n%s", text, startLimit, p.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// terminate sends SIGTERM and checks that the process exits 0 in time.
func (p *process) terminate(t *testing.T) {
	t.Helper()
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(stopLimit):
		t.Fatalf("herald did not exit within %s of SIGTERM\n%s", stopLimit, p.stderr.String())
	}
	if p.err != nil { // an *exec.ExitError for a non-zero status
		t.Fatalf("herald exited with %v after SIGTERM\n%s", p.err, p.stderr.String())
	}
	t.Logf("herald stopped %s after SIGTERM", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(p.stderr.String(), "herald stopped") {
		t.Errorf("herald did not log its stop:\n%s", p.stderr.String())
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
