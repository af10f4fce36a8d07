package redisstream_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/broker/redisstream"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/publishertest"
)

// TestDefaultConfig uses the default names (on a private server, so that
// outbox.events collides with nothing).
func TestDefaultConfig(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	p := connect(t, redisstream.Config{Addr: srv.addr})
	c := p.Config()
	if c.Stream != "outbox.events" || c.ClientName != "herald" || c.MaxLen != 0 || c.DB != 0 ||
		c.DialTimeout != 5*time.Second || c.ReadTimeout != 5*time.Second || c.WriteTimeout != 5*time.Second {
		t.Fatalf("defaults: %s", c)
	}
	if p.MaxMessageBytes() != 1<<20 {
		t.Fatalf("MaxMessageBytes = %d, want the server's proto-max-bulk-len 1 MiB", p.MaxMessageBytes())
	}
	publishOK(t, p, publishertest.Batch(t, "d", 2, 1))
	if n := len(entries(t, srv.addr, "outbox.events")); n != 2 {
		t.Fatalf("outbox.events holds %d entries, want 2", n)
	}
	list, err := admin(t, srv.addr).ClientList(testCtx(t)).Result()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(list, " name=herald ") {
		t.Fatalf("no connection named herald in CLIENT LIST:\n%s", list)
	}
	if (redisstream.Config{}).String() != "redis:///0" {
		t.Fatalf("zero Config renders %q", (redisstream.Config{}).String())
	}
}

// TestWireFormat: one entry per event, with the fields event (the body,
// byte for byte), type, subject and id, in batch order.
func TestWireFormat(t *testing.T) {
	t.Parallel()
	cfg := uniqueConfig(t, localAddr())
	p := connect(t, cfg)
	rec := publishertest.NewRecord("order-7", 3)
	rec.Type = "line_item.status_changed"
	msgs := []outbox.Message{publishertest.NewMessage(t, rec), publishertest.NewMessage(t, publishertest.NewRecord("order-8", 1))}
	msgs[1].Body = append(msgs[1].Body, " \n"...) // bytes a re-encoding would drop
	publishOK(t, p, msgs)

	got := entries(t, cfg.Addr, cfg.Stream)
	if len(got) != 2 {
		t.Fatalf("%d entries, want 2", len(got))
	}
	for i, e := range got {
		m := msgs[i]
		want := map[string]any{"event": string(m.Body), "type": m.Type, "subject": m.AggregateID, "id": m.ID.String()}
		if fmt.Sprint(e.Values) != fmt.Sprint(want) {
			t.Errorf("entry %d (%s): %v, want %v", i, e.ID, e.Values, want)
		}
	}
	// The field order, as XRANGE returns it on the wire.
	raw, err := admin(t, cfg.Addr).Do(testCtx(t), "XRANGE", cfg.Stream, "-", "+", "COUNT", "1").Slice()
	if err != nil {
		t.Fatal(err)
	}
	fields := raw[0].([]any)[1].([]any)
	if got := fmt.Sprintf("%v %v %v %v", fields[0], fields[2], fields[4], fields[6]); got != "event type subject id" {
		t.Fatalf("fields %v, want event, type, subject, id", fields)
	}
}

// TestMaxLen: with maxlen the stream is trimmed to about that many entries.
func TestMaxLen(t *testing.T) {
	t.Parallel()
	cfg := uniqueConfig(t, localAddr())
	cfg.MaxLen = 100
	p := connect(t, cfg)
	for i := range 5 {
		publishOK(t, p, publishertest.Batch(t, fmt.Sprintf("trim%d", i), 200, 1))
	}
	n, err := admin(t, cfg.Addr).XLen(testCtx(t), cfg.Stream).Result()
	if err != nil {
		t.Fatal(err)
	}
	// MAXLEN ~ trims whole radix-tree nodes (100 entries each by default).
	if n < 100 || n > 300 {
		t.Fatalf("XLEN %d after 1000 entries with maxlen 100, want about 100", n)
	}
}

// TestPerAggregateOrder: workers publishing concurrently, each the events
// of its own aggregates one call after another, leave every aggregate's
// events in sequence order and every batch's entries in batch order.
func TestPerAggregateOrder(t *testing.T) {
	t.Parallel()
	cfg := uniqueConfig(t, localAddr())
	p := connect(t, cfg)
	const workers, aggregates, calls = 4, 5, 20
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for seq := int64(1); seq <= calls; seq++ {
				batch := make([]outbox.Message, aggregates)
				for j := range batch {
					a := (j + int(seq)) % aggregates
					batch[j] = publishertest.NewMessage(t, publishertest.NewRecord(fmt.Sprintf("w%d-a%d", w, a), seq))
				}
				for i, err := range p.Publish(testCtx(t), batch) {
					if err != nil {
						errc <- fmt.Errorf("worker %d seq %d message %d: %w", w, seq, i, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	got := entries(t, cfg.Addr, cfg.Stream)
	if len(got) != workers*aggregates*calls {
		t.Fatalf("%d entries, want %d", len(got), workers*aggregates*calls)
	}
	next := map[string]int64{}
	lastPos := map[string]int{} // worker/seq → position of the batch's last aggregate
	for _, e := range got {
		ce, err := outbox.ParseCloudEvent([]byte(e.Values["event"].(string)))
		if err != nil {
			t.Fatal(err)
		}
		if want := next[ce.Subject] + 1; ce.Sequence != want {
			t.Fatalf("aggregate %s: sequence %d, want %d", ce.Subject, ce.Sequence, want)
		}
		next[ce.Subject] = ce.Sequence
		var w, a int
		if _, err := fmt.Sscanf(ce.Subject, "w%d-a%d", &w, &a); err != nil {
			t.Fatalf("aggregate %s: %v", ce.Subject, err)
		}
		pos := (a - int(ce.Sequence)%aggregates + aggregates) % aggregates // index within its batch
		key := fmt.Sprintf("%d/%d", w, ce.Sequence)
		if last, ok := lastPos[key]; ok && pos != last+1 || !ok && pos != 0 {
			t.Fatalf("worker %d batch %d: entry at batch index %d after index %d", w, ce.Sequence, pos, last)
		}
		lastPos[key] = pos
	}
}
