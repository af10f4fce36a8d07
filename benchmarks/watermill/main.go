// Command watermill measures how fast Watermill's forwarder
// (components/forwarder) drains a backlog of enveloped messages from
// PostgreSQL (watermill-sql) into NATS JetStream (watermill-nats), tuned as
// its options allow, so that Herald's relay can be compared with it on the
// same machine (docs/BENCHMARKS.md). It is a module of its own, outside the
// test suite, so that Herald does not depend on Watermill:
//
//	cd benchmarks/watermill && go run . --events 200000 --schema default
//	go run . --events 200000 --schema queue
//
// It makes its own tables and stream (random names) and drops them at the
// end; it prints one JSON line and exits 1 unless the stream holds exactly
// --events messages.
package main

import (
	"context"
	"crypto/rand"
	stdsql "database/sql"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/nats-io/nats.go"
)

type config struct {
	events       int
	batch        int
	poll         time.Duration
	dbURL        string
	natsURL      string
	schema       string
	payloadBytes int
	preloadChunk int
	timeout      time.Duration
}

type result struct {
	Events       int     `json:"events"`
	Seconds      float64 `json:"seconds"`
	EventsPerSec float64 `json:"events_per_sec"`
	Batch        int     `json:"batch"`
	PollMs       float64 `json:"poll_ms"`
	Schema       string  `json:"schema"`
	StreamMsgs   uint64  `json:"stream_msgs"`
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05.000")+" "+format+"\n", args...)
}

func main() {
	var c config
	flag.IntVar(&c.events, "events", 200000, "number of events to preload and drain")
	flag.IntVar(&c.batch, "batch", 1000, "watermill-sql SubscribeBatchSize")
	flag.DurationVar(&c.poll, "poll", 10*time.Millisecond, "watermill-sql subscriber PollInterval")
	flag.StringVar(&c.dbURL, "db", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "PostgreSQL URL")
	flag.StringVar(&c.natsURL, "nats", "nats://127.0.0.1:4222", "NATS URL")
	flag.StringVar(&c.schema, "schema", "default", `"default" (DefaultPostgreSQLSchema+DefaultPostgreSQLOffsetsAdapter) or "queue" (PostgreSQLQueueSchema+PostgreSQLQueueOffsetsAdapter{DeleteOnAck:true})`)
	flag.IntVar(&c.payloadBytes, "payload-bytes", 400, "approximate size of each event's JSON payload")
	flag.IntVar(&c.preloadChunk, "preload-chunk", 1000, "messages per Publish call during preload")
	flag.DurationVar(&c.timeout, "timeout", 10*time.Minute, "give up draining after this long")
	flag.Parse()

	if c.events <= 0 || c.batch <= 0 || c.poll <= 0 || c.preloadChunk <= 0 {
		logf("events, batch, poll and preload-chunk must be positive")
		os.Exit(2)
	}
	if c.schema != "default" && c.schema != "queue" {
		logf("unknown --schema %q (want default or queue)", c.schema)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	res, err := run(ctx, c)
	stop()
	if err != nil {
		logf("FAILED: %v", err)
		os.Exit(1)
	}
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
	if res.StreamMsgs != uint64(c.events) {
		os.Exit(1)
	}
}

func randomSuffix() string {
	b := make([]byte, 5)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// orderPayload builds a JSON order event of roughly size bytes, unique per i.
func orderPayload(i, size int, suffix string) []byte {
	type item struct {
		SKU      string `json:"sku"`
		Qty      int    `json:"qty"`
		PriceCts int    `json:"price_cents"`
	}
	ev := struct {
		Type       string `json:"type"`
		OrderID    string `json:"order_id"`
		CustomerID string `json:"customer_id"`
		Items      []item `json:"items"`
		TotalCts   int    `json:"total_cents"`
		Currency   string `json:"currency"`
		CreatedAt  string `json:"created_at"`
		Note       string `json:"note"`
	}{
		Type:       "order.created",
		OrderID:    fmt.Sprintf("ord-%s-%09d", suffix, i),
		CustomerID: fmt.Sprintf("cust-%06d", i%100000),
		Items: []item{
			{SKU: fmt.Sprintf("SKU-%05d", i%997), Qty: 1 + i%3, PriceCts: 1999},
			{SKU: fmt.Sprintf("SKU-%05d", i%991), Qty: 1, PriceCts: 4599},
		},
		Currency:  "EUR",
		CreatedAt: "2024-01-01T00:00:00Z",
	}
	ev.TotalCts = ev.Items[0].Qty*ev.Items[0].PriceCts + ev.Items[1].PriceCts
	b, _ := json.Marshal(ev)
	if pad := size - len(b); pad > 0 {
		ev.Note = strings.Repeat("x", pad)
		b, _ = json.Marshal(ev)
	}
	return b
}

func adapters(c config) (wmsql.SchemaAdapter, wmsql.OffsetsAdapter) {
	if c.schema == "queue" {
		return wmsql.PostgreSQLQueueSchema{SubscribeBatchSize: c.batch},
			wmsql.PostgreSQLQueueOffsetsAdapter{DeleteOnAck: true}
	}
	return wmsql.DefaultPostgreSQLSchema{SubscribeBatchSize: c.batch},
		wmsql.DefaultPostgreSQLOffsetsAdapter{}
}

func run(ctx context.Context, c config) (res result, err error) {
	suffix := randomSuffix()
	sqlTopic := "wmbench_" + suffix                 // forwarder topic == SQL topic
	streamName := "WMBENCH_" + suffix               // JetStream stream
	subjectPrefix := "wmbench." + suffix            // stream subjects: <prefix>.>
	destSubject := subjectPrefix + ".order.created" // destination topic inside each envelope
	logger := watermill.NopLogger{}
	logf("run %s: events=%d batch=%d poll=%s schema=%s payload~%dB", suffix, c.events, c.batch, c.poll, c.schema, c.payloadBytes)

	// ---- connections -------------------------------------------------------
	db, err := stdsql.Open("pgx", c.dbURL)
	if err != nil {
		return res, fmt.Errorf("open db: %w", err)
	}
	defer db.Close()
	if err := db.PingContext(ctx); err != nil {
		return res, fmt.Errorf("ping db: %w", err)
	}

	// Separate NATS connection for stream management and monitoring, so that
	// polling does not share the forwarder's connection.
	mon, err := nats.Connect(c.natsURL, nats.Name("wmbench-monitor"))
	if err != nil {
		return res, fmt.Errorf("connect nats: %w", err)
	}
	defer mon.Close()
	js, err := mon.JetStream()
	if err != nil {
		return res, fmt.Errorf("jetstream: %w", err)
	}

	// ---- cleanup (runs on success and on failure) ------------------------------
	schemaAdapter, offsetsAdapter := adapters(c)
	var cleanups []func()
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}()

	// ---- JetStream stream ------------------------------------------------------
	if _, err := js.AddStream(&nats.StreamConfig{
		Name:       streamName,
		Subjects:   []string{subjectPrefix + ".>"},
		Storage:    nats.FileStorage,
		Retention:  nats.LimitsPolicy,
		Replicas:   1,
		Duplicates: 2 * time.Minute, // de-dup window for Nats-Msg-Id (server default)
	}); err != nil {
		return res, fmt.Errorf("add stream: %w", err)
	}
	cleanups = append(cleanups, func() {
		if err := js.DeleteStream(streamName); err != nil {
			logf("cleanup: delete stream %s: %v", streamName, err)
		} else {
			logf("cleanup: deleted stream %s", streamName)
		}
	})

	// ---- SQL tables ----------------------------------------------------------
	cleanups = append(cleanups, func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, t := range []string{`"watermill_` + sqlTopic + `"`, `"watermill_offsets_` + sqlTopic + `"`} {
			if _, err := db.ExecContext(cctx, "DROP TABLE IF EXISTS "+t); err != nil {
				logf("cleanup: drop %s: %v", t, err)
			}
		}
		logf("cleanup: dropped SQL tables for %s", sqlTopic)
	})

	beginner := wmsql.BeginnerFromStdSQL(db)
	sub, err := wmsql.NewSubscriber(beginner, wmsql.SubscriberConfig{
		SchemaAdapter:  schemaAdapter,
		OffsetsAdapter: offsetsAdapter,
		PollInterval:   c.poll,
		// Schema is created explicitly below, before the clock starts.
		InitializeSchema: false,
		// AckDeadline, ResendInterval, RetryInterval, BackoffManager: defaults.
	}, logger)
	if err != nil {
		return res, fmt.Errorf("new sql subscriber: %w", err)
	}
	cleanups = append(cleanups, func() { _ = sub.Close() })
	if err := sub.SubscribeInitialize(sqlTopic); err != nil {
		return res, fmt.Errorf("initialize schema: %w", err)
	}

	// ---- preload ---------------------------------------------------------------
	sqlPub, err := wmsql.NewPublisher(beginner, wmsql.PublisherConfig{
		SchemaAdapter:        schemaAdapter,
		AutoInitializeSchema: false,
	}, logger)
	if err != nil {
		return res, fmt.Errorf("new sql publisher: %w", err)
	}
	fwdPub := forwarder.NewPublisher(sqlPub, forwarder.PublisherConfig{ForwarderTopic: sqlTopic})
	preStart := time.Now()
	for done := 0; done < c.events; {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		n := min(c.preloadChunk, c.events-done)
		msgs := make([]*message.Message, n)
		for i := range msgs {
			msgs[i] = message.NewMessage(watermill.NewUUID(), orderPayload(done+i, c.payloadBytes, suffix))
		}
		if err := fwdPub.Publish(destSubject, msgs...); err != nil {
			return res, fmt.Errorf("preload publish: %w", err)
		}
		done += n
	}
	_ = fwdPub.Close()
	var rows int64
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM "watermill_`+sqlTopic+`"`).Scan(&rows); err != nil {
		return res, fmt.Errorf("count preloaded rows: %w", err)
	}
	logf("preloaded %d rows into watermill_%s in %.2fs", rows, sqlTopic, time.Since(preStart).Seconds())
	if rows != int64(c.events) {
		return res, fmt.Errorf("preloaded %d rows, want %d", rows, c.events)
	}

	// ---- forwarder ---------------------------------------------------------------
	natsPub, err := wmnats.NewPublisher(wmnats.PublisherConfig{
		URL:         c.natsURL,
		NatsOptions: []nats.Option{nats.Name("wmbench-forwarder")},
		// Marshaler: default NATSMarshaler (raw payload + headers; sets the
		// _watermill_message_uuid header that TrackMsgId reads).
		JetStream: wmnats.JetStreamConfig{
			Disabled:      false,
			AutoProvision: false, // stream created above; avoids a StreamInfo per Publish call
			TrackMsgId:    true,  // Nats-Msg-Id = message UUID -> server-side de-dup
		},
	}, logger)
	if err != nil {
		return res, fmt.Errorf("new nats publisher: %w", err)
	}
	cleanups = append(cleanups, func() { _ = natsPub.Close() })

	fwd, err := forwarder.NewForwarder(sub, natsPub, logger, forwarder.Config{
		ForwarderTopic: sqlTopic,
		CloseTimeout:   5 * time.Second,
	})
	if err != nil {
		return res, fmt.Errorf("new forwarder: %w", err)
	}
	cleanups = append(cleanups, func() { _ = fwd.Close() }) // runs before sub/pub/tables cleanup

	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	runErr := make(chan error, 1)

	start := time.Now()
	go func() { runErr <- fwd.Run(runCtx) }()

	deadline := time.NewTimer(c.timeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	lastLog := start
	var elapsed time.Duration
	runningCh := fwd.Running()
	var firstAt time.Duration
	for {
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-deadline.C:
			return res, fmt.Errorf("timeout after %s", c.timeout)
		case err := <-runErr:
			return res, fmt.Errorf("forwarder stopped early: %v", err)
		case <-runningCh:
			runningCh = nil // closed channel: report once, then stop selecting on it
			logf("forwarder running after %.1f ms", float64(time.Since(start).Microseconds())/1000)
			continue
		case <-tick.C:
		}
		si, err := js.StreamInfo(streamName)
		if err != nil {
			return res, fmt.Errorf("stream info: %w", err)
		}
		if firstAt == 0 && si.State.Msgs > 0 {
			firstAt = time.Since(start)
			logf("first message in stream after %.3fs (includes default-schema visibility wait, see pg_snapshot_xmin)", firstAt.Seconds())
		}
		if si.State.Msgs >= uint64(c.events) {
			elapsed = time.Since(start)
			break
		}
		if time.Since(lastLog) >= time.Second {
			lastLog = time.Now()
			logf("drain: %d/%d in stream (%.0f/s so far)", si.State.Msgs, c.events, float64(si.State.Msgs)/time.Since(start).Seconds())
		}
	}
	logf("stream reached %d messages after %.3fs (%.0f/s after the first message landed)", c.events, elapsed.Seconds(),
		float64(c.events)/max(elapsed-firstAt, time.Millisecond).Seconds())

	// Stop the forwarder, then settle briefly and read the final stream state.
	if err := fwd.Close(); err != nil {
		logf("forwarder close: %v", err)
	}
	time.Sleep(200 * time.Millisecond)
	si, err := js.StreamInfo(streamName)
	if err != nil {
		return res, fmt.Errorf("final stream info: %w", err)
	}
	switch {
	case si.State.Msgs == uint64(c.events):
		logf("check OK: stream holds exactly %d messages", si.State.Msgs)
	case si.State.Msgs > uint64(c.events):
		logf("check: %d DUPLICATES (stream holds %d, want %d)", si.State.Msgs-uint64(c.events), si.State.Msgs, c.events)
	default:
		logf("check: LOSS (stream holds %d, want %d)", si.State.Msgs, c.events)
	}

	// Sanity check of what the forwarder wrote: subject, headers, payload.
	if raw, err := js.GetMsg(streamName, 1); err != nil {
		logf("get first stream message: %v", err)
	} else {
		logf("first stream msg: subject=%s Nats-Msg-Id=%s %s=%s payload=%dB valid_json=%v",
			raw.Subject, raw.Header.Get(nats.MsgIdHdr), wmnats.WatermillUUIDHdr,
			raw.Header.Get(wmnats.WatermillUUIDHdr), len(raw.Data), json.Valid(raw.Data))
	}

	secs := elapsed.Seconds()
	return result{
		Events:       c.events,
		Seconds:      round(secs, 3),
		EventsPerSec: round(float64(c.events)/secs, 1),
		Batch:        c.batch,
		PollMs:       float64(c.poll.Microseconds()) / 1000,
		Schema:       c.schema,
		StreamMsgs:   si.State.Msgs,
	}, nil
}

func round(v float64, places int) float64 {
	p := 1.0
	for i := 0; i < places; i++ {
		p *= 10
	}
	return float64(int64(v*p+0.5)) / p
}
