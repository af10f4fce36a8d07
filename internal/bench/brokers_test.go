package bench

import (
	"os"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/heraldhq/herald/internal/app"
)

// amqpURL and redisURL are the machine's RabbitMQ and Redis.
func amqpURL() string {
	h := "127.0.0.1"
	if e := os.Getenv("HERALD_TEST_AMQP_HOST"); e != "" {
		h = e
	}
	return "amqp://guest:guest@" + h + ":5672/"
}

func redisURL() string {
	a := "127.0.0.1:6379"
	if e := os.Getenv("HERALD_TEST_REDIS_ADDR"); e != "" {
		a = e
	}
	return "redis://" + a
}

// kfakeURL starts a kfake cluster on 127.0.0.1 for the test.
func kfakeURL(t *testing.T) string {
	t.Helper()
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(-1))
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(kc.Close)
	return "kafka://" + strings.Join(kc.ListenAddrs(), ",")
}

// externalBrokers are the brokers other than NATS, each read back through
// a namespace of the bench's own.
func externalBrokers(t *testing.T) []backend {
	return []backend{
		{name: "rabbitmq", broker: amqpURL()},
		{name: "redis", broker: redisURL()},
		{name: "kafka", broker: kfakeURL(t)},
		{name: "webhook", broker: "http://127.0.0.1:1/unused"},
	}
}

// TestCompareModeBrokers drains a backlog by the plain loop and by the
// relay to each broker and reads every event back.
func TestCompareModeBrokers(t *testing.T) {
	for _, b := range externalBrokers(t) {
		t.Run(b.name, func(t *testing.T) {
			cfg := b.config(ModeCompare)
			cfg.Events, cfg.Aggregates = 1200, 200
			cfg.App.Relay.Workers = 2
			res := run(t, cfg).(*DrainResult)
			if len(res.Runs) != 2 {
				t.Fatalf("runs %+v", res.Runs)
			}
			if res.Broker != strings.ToLower(b.name) {
				t.Errorf("broker %q", res.Broker)
			}
			for _, r := range res.Runs {
				v := r.Verify
				if r.Published != 1200 || v == nil || v.Received != 1200 || v.Lost != 0 || v.Duplicates != 0 {
					t.Errorf("%s: %+v verify %+v", r.Kind, r, v)
				}
			}
			if v := res.Runs[1].Verify; v == nil || v.Reordered != 0 {
				t.Errorf("relay: verify %+v", v)
			}
		})
	}
}

// TestFullModeBrokers runs the full mode on each broker: Herald publishes
// to the bench's namespace and the bench's consumer reads it.
func TestFullModeBrokers(t *testing.T) {
	for _, b := range externalBrokers(t) {
		t.Run(b.name, func(t *testing.T) {
			cfg := b.config(ModeFull)
			cfg.Orders, cfg.Concurrency = 20, 2
			res := run(t, cfg).(*FullResult)
			checkFull(t, res, 20)
			if res.Broker != b.name {
				t.Errorf("broker %q", res.Broker)
			}
		})
	}
}

// TestLatencyModeRedis runs the latency mode on a broker other than NATS.
func TestLatencyModeRedis(t *testing.T) {
	cfg := backend{broker: redisURL()}.config(ModeLatency)
	cfg.Duration, cfg.Rate, cfg.Warmup = 300e6, 200, 0
	res := run(t, cfg).(*LatencyResult)
	if res.Verify.Lost != 0 || res.Verify.Reordered != 0 || res.Verify.Received == 0 {
		t.Errorf("verify %+v", res.Verify)
	}
}

func TestWebhookURLNeedsNoURL(t *testing.T) {
	_, err := remoteReader(app.Config{}, app.BrokerWebhook)
	if !app.IsUsageError(err) {
		t.Errorf("%v, want a usage error", err)
	}
}

// BenchmarkCompareKafka runs compare mode (plain loop, then relay) on a
// 200,000-event backlog on kfake, an in-process fake of Kafka: its figures
// are kfake's, not Kafka's. go test -run '^$' -bench CompareKafka -benchtime 1x
func BenchmarkCompareKafka(b *testing.B) {
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(-1))
	if err != nil {
		b.Fatal(err)
	}
	defer kc.Close()
	cfg := backend{dbURL: os.Getenv("HERALD_BENCH_DB"), broker: "kafka://" + strings.Join(kc.ListenAddrs(), ",")}.config(ModeCompare)
	cfg.Events = 200_000
	for b.Loop() {
		res, err := Run(b.Context(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		if err := res.Failure(); err != nil {
			b.Fatal(err)
		}
		d := res.(*DrainResult)
		b.ReportMetric(d.Runs[0].EventsPerSec, "baseline-events/s")
		b.ReportMetric(d.Runs[1].EventsPerSec, "relay-events/s")
		b.ReportMetric(d.ratio(), "relay/baseline")
	}
}
