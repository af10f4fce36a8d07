package app_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/app"
)

// herald serve serves the operator UI at /ui/ and redirects / there; the
// overview shows the in-process relay; an open event stream does not hold
// up a graceful stop.
func TestServeUI(t *testing.T) {
	t.Parallel()
	var logs lockedBuffer
	cfg := testConfig(t, &lockedBuffer{})
	cfg.Logger = newLogger(&logs)
	cfg.ShutdownTimeout = time.Minute
	ctx := context.Background()
	a, err := app.Start(ctx, cfg, app.Options{HTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	get := func(path string) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, a.URL()+path, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := get("/") // followed to /ui/: no token is set, so the UI is open (loopback only)
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/ui/" ||
		!strings.Contains(string(body), "Relay workers in this process") {
		t.Fatalf("GET / ended at %s with %d:\n%s", resp.Request.URL, resp.StatusCode, body)
	}

	stream := get("/ui/events")
	defer func() { _ = stream.Body.Close() }()
	sc := bufio.NewScanner(stream.Body)
	for sc.Scan() && sc.Text() != "event: overview" {
	}
	if err := a.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for sc.Scan() { // the stream ends with the server
	}
	if strings.Contains(logs.String(), "still in flight") {
		t.Errorf("the event stream held up the stop:\n%s", logs.String())
	}
}
