package natsjs_test

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/heraldhq/herald/broker/natsjs"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/publishertest"
)

// cluster is three JetStream servers routed to each other on loopback, as
// the scaled-out deployment runs them (deploy/compose.yaml).
type cluster struct {
	servers []*server.Server
	urls    []string
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	routePorts := []int{freePort(t), freePort(t), freePort(t)}
	var routes []string
	for _, p := range routePorts {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	c := &cluster{}
	for i := range 3 {
		opts := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1",
			Port:       server.RANDOM_PORT,
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoSigs:     true,
			NoLog:      true,
			Cluster: server.ClusterOpts{
				Name: "herald-test",
				Host: "127.0.0.1",
				Port: routePorts[i],
			},
			Routes: server.RoutesFromStr(strings.Join(routes, ",")),
		}
		ns, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		ns.Start()
		t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
		c.servers = append(c.servers, ns)
	}
	for _, ns := range c.servers {
		if !ns.ReadyForConnections(10 * time.Second) {
			t.Fatal("a cluster node is not ready")
		}
		c.urls = append(c.urls, ns.ClientURL())
	}
	c.waitForLeader(t)
	return c
}

// waitForLeader waits until the running nodes have a JetStream meta leader,
// which creating a stream or a consumer needs.
func (c *cluster) waitForLeader(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		leaders := 0
		for _, ns := range c.servers {
			if ns.Running() && ns.JetStreamIsLeader() {
				leaders++
			}
		}
		if leaders == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the cluster elected no JetStream meta leader within 60s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// connectWhenPlaced connects a publisher whose stream has replicas. A meta
// leader elected a moment ago may not yet have heard from every peer and
// refuses to place the replicas ("no suitable peers for placement"): try
// again until it has, within a minute.
func (c *cluster) connectWhenPlaced(t *testing.T, url string, cfg natsjs.Config) *natsjs.Publisher {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		p, err := natsjs.Connect(testCtx(t), url, cfg)
		if err == nil {
			t.Cleanup(func() { _ = p.Close() })
			return p
		}
		if !strings.Contains(err.Error(), "no suitable peers") || time.Now().After(deadline) {
			t.Fatalf("Connect(%s): %v", url, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// A stream replicated on three nodes keeps acknowledging, and delivering
// every event, when the node a publisher is connected to stops: the
// publisher reconnects to another node and the stream elects a new leader.
func TestThreeNodeClusterSurvivesANode(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	url := strings.Join(c.urls, ",")
	cfg := natsjs.Config{Stream: "CLUSTERED", SubjectPrefix: "clustered.", Replicas: 3}
	p := c.connectWhenPlaced(t, url, cfg)

	before := publishertest.Batch(t, "before", 50, 1)
	publishOK(t, p, before)

	// Stop the node the publisher is connected to.
	connected := p.Conn().ConnectedUrl()
	stopped := -1
	for i, u := range c.urls {
		if u == connected {
			stopped = i
			c.servers[i].Shutdown()
			c.servers[i].WaitForShutdown()
		}
	}
	if stopped < 0 {
		t.Fatalf("the publisher's server %s is none of the cluster's %v", connected, c.urls)
	}

	after := publishertest.Batch(t, "after", 50, 1)
	deadline := time.Now().Add(60 * time.Second)
	for {
		failed := 0
		for _, err := range p.Publish(testCtx(t), after) {
			if err != nil {
				failed++
				if outbox.IsPermanent(err) {
					t.Fatalf("a node's loss was reported as permanent: %v", err)
				}
			}
		}
		if failed == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %d of %d failing 60s after a node stopped", failed, len(after))
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Reading back makes a consumer, which needs a meta leader: if the
	// stopped node was it, the others elect a new one first.
	c.waitForLeader(t)
	var live []string
	for i, u := range c.urls {
		if i != stopped {
			live = append(live, u)
		}
	}
	got := map[string]bool{}
	ch := subscribe(t, strings.Join(live, ","), cfg, natsjs.SubscribeOptions{})
	for len(got) < len(before)+len(after) {
		d := next(t, ch)
		if d.Err != nil {
			t.Fatalf("an invalid event: %v", d.Err)
		}
		got[d.Event.ID] = true
	}
	for _, m := range append(before, after...) {
		if !got[m.ID.String()] {
			t.Errorf("%s (%s) was acked but is not in the stream", m.ID, m.AggregateID)
		}
	}
}
