package inboxtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/inbox"
)

// The crash test's stream: small enough to run twice, long enough that the
// kill lands mid-stream.
const (
	crashAggregates = 20
	crashPer        = 50
	crashSeed       = 7
	crashKillAfter  = 200 // acknowledged events before the kill
)

// Environment of a child consumer.
const (
	envChild = "HERALD_INBOXTEST_CHILD" // the database address
	envAcks  = "HERALD_INBOXTEST_ACKS"  // the acknowledgement file
)

// Child makes this process a consumer of the crash test's stream when the
// suite started it as one (the environment says so), and exits when the
// stream is done; otherwise it returns at once. Call it first in TestMain.
//
// The child plays broker and consumer: it takes the stream's events that
// the acknowledgement file does not list, in order, through the inbox, and
// after each commit appends the event's index to the file, as a broker
// forgets a message once it is acknowledged. An event whose commit landed
// but whose acknowledgement did not is delivered again to the next child.
func Child[TTx any](h Harness[TTx]) {
	addr := os.Getenv(envChild)
	if addr == "" {
		return
	}
	if err := runChild(h, addr, os.Getenv(envAcks)); err != nil {
		fmt.Fprintln(os.Stderr, "inboxtest child:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runChild[TTx any](h Harness[TTx], addr, acksPath string) error {
	ctx := context.Background()
	d, closeFn, err := h.Open(ctx, addr)
	if err != nil {
		return err
	}
	defer closeFn()
	acked, err := readAcks(acksPath)
	if err != nil {
		return err
	}
	acks, err := os.OpenFile(acksPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600) //nolint:gosec // the test's own temp file
	if err != nil {
		return err
	}
	defer func() { _ = acks.Close() }()
	in := inbox.New(d, h.Record, inbox.Config{})
	for i, ev := range Stream(crashAggregates, crashPer, crashSeed) {
		if acked[i] {
			continue
		}
		if _, err := in.Process(ctx, ev); err != nil {
			return fmt.Errorf("event %d: %w", i, err)
		}
		if _, err := fmt.Fprintf(acks, "%d\n", i); err != nil {
			return err
		}
	}
	return nil
}

// readAcks reads the acknowledged indexes; a last line cut short by a kill
// does not count.
func readAcks(path string) (map[int]bool, error) {
	acked := map[int]bool{}
	b, err := os.ReadFile(path) //nolint:gosec // the test's own temp file
	if os.IsNotExist(err) {
		return acked, nil
	}
	if err != nil {
		return nil, err
	}
	lines := strings.Split(string(b), "\n")
	for _, line := range lines[:len(lines)-1] { // the last is empty or cut short
		i, err := strconv.Atoi(line)
		if err != nil {
			return nil, fmt.Errorf("acknowledgement file: %w", err)
		}
		acked[i] = true
	}
	return acked, nil
}

// testCrash kills a consumer with SIGKILL mid-stream, then lets another
// finish the stream: the consumer table holds every event once, in
// sequence, whatever the kill interrupted.
func testCrash[TTx any](t *testing.T, s *suite[TTx]) {
	acks := filepath.Join(t.TempDir(), "acks")
	child := func() *exec.Cmd {
		cmd := exec.CommandContext(s.ctx, os.Args[0], "-test.run=^$") //nolint:gosec // the test binary itself
		cmd.Env = append(os.Environ(), envChild+"="+s.addr, envAcks+"="+acks)
		return cmd
	}
	first := child()
	first.Stderr = os.Stderr
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- first.Wait() }()
	// Kill it once it has acknowledged a share of the stream.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for killed := false; !killed; {
		select {
		case err := <-exited:
			t.Fatalf("the first consumer ended before it was killed: %v", err)
		case <-s.ctx.Done():
			_ = first.Process.Kill()
			t.Fatalf("the first consumer made no progress: %v", <-exited)
		case <-tick.C:
			acked, err := readAcks(acks)
			if err != nil {
				t.Fatal(err)
			}
			if len(acked) >= crashKillAfter {
				if err := first.Process.Kill(); err != nil { // SIGKILL, to this pid only
					t.Fatal(err)
				}
				killed = true
			}
		}
	}
	t.Logf("the first consumer: %v", <-exited) // killed
	acked, err := readAcks(acks)
	if err != nil {
		t.Fatal(err)
	}
	if len(acked) >= crashAggregates*crashPer {
		t.Fatalf("the first consumer finished the stream (%d acks) before the kill", len(acked))
	}
	second := child()
	if out, err := second.CombinedOutput(); err != nil {
		t.Fatalf("the second consumer: %v\n%s", err, out)
	}
	CheckInSequence(t, s.applied(t), crashAggregates, crashPer)
	t.Logf("killed after %d of %d acknowledgements", len(acked), crashAggregates*crashPer)
}
