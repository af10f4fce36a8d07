package ordersvc_test

import (
	"context"
	"encoding/hex"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/ordersvc"
	"github.com/heraldhq/herald/order"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestCursor(t *testing.T) {
	t.Parallel()
	c := ordersvc.Cursor{
		CreatedAt: time.Date(2031, 5, 6, 7, 8, 9, 123456000, time.UTC),
		ID:        uuid.MustParse("0190a000-0000-7000-8000-0000000000ff"),
	}
	s := ordersvc.EncodeCursor(c)
	if s != "AAbgna21yoABkKAAAABwAIAAAAAAAAD_" {
		t.Errorf("EncodeCursor = %q", s)
	}
	got, ok := ordersvc.DecodeCursor(s)
	if !ok || !got.CreatedAt.Equal(c.CreatedAt) || got.ID != c.ID {
		t.Fatalf("DecodeCursor = %+v, %v; want %+v", got, ok, c)
	}
	for _, bad := range []string{"", "x", s + "A", s[:len(s)-1], "AAbgna21yoABkKAAAABwAIAAAAAAAAD/",
		s[:16] + "\n" + s[16:31], s[:31] + "=", "AAbgna21yoABkKAAAABwAIAAAAAAAAD_=",
		// Times no order has, which the stores would read differently.
		ordersvc.EncodeCursor(ordersvc.Cursor{CreatedAt: time.UnixMicro(math.MinInt64), ID: c.ID}),
		ordersvc.EncodeCursor(ordersvc.Cursor{CreatedAt: time.UnixMicro(math.MaxInt64), ID: c.ID}),
		ordersvc.EncodeCursor(ordersvc.Cursor{CreatedAt: time.Date(0, 12, 31, 23, 59, 59, 999999000, time.UTC)}),
		ordersvc.EncodeCursor(ordersvc.Cursor{CreatedAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}),
	} {
		if _, ok := ordersvc.DecodeCursor(bad); ok {
			t.Errorf("DecodeCursor(%q) accepted", bad)
		}
	}
	// The first and last instants of years 1 to 9999 are cursors.
	for _, at := range []time.Time{time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), time.Unix(0, 0).UTC(),
		time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)} {
		got, ok := ordersvc.DecodeCursor(ordersvc.EncodeCursor(ordersvc.Cursor{CreatedAt: at, ID: c.ID}))
		if !ok || !got.CreatedAt.Equal(at) || got.ID != c.ID {
			t.Errorf("cursor at %v: %+v, %v", at, got, ok)
		}
	}
}

func TestRequestHash(t *testing.T) {
	t.Parallel()
	req := order.ConfirmPayment{PaymentID: "pay_1", Amount: 3998, Currency: "EUR"}
	id := uuid.MustParse("0190a000-0000-7000-8000-000000000001")
	h, err := ordersvc.RequestHash(ordersvc.OpConfirmPayment, "alice", id, req)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 32 {
		t.Fatalf("hash has %d bytes", len(h))
	}
	same, _ := ordersvc.RequestHash(ordersvc.OpConfirmPayment, "alice", id, req)
	if hex.EncodeToString(same) != hex.EncodeToString(h) {
		t.Fatal("hash is not deterministic")
	}
	other := req
	other.Amount++
	for name, args := range map[string][]any{
		"operation": {ordersvc.OpCreateOrder, "alice", id, req},
		"actor":     {ordersvc.OpConfirmPayment, "bob", id, req},
		"order":     {ordersvc.OpConfirmPayment, "alice", uuid.Nil, req},
		"body":      {ordersvc.OpConfirmPayment, "alice", id, other},
	} {
		d, err := ordersvc.RequestHash(args[0].(string), args[1].(string), args[2].(uuid.UUID), args[3])
		if err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(d) == hex.EncodeToString(h) {
			t.Errorf("another %s gives the same hash", name)
		}
	}
}

func TestTraceHeaders(t *testing.T) {
	t.Parallel()
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, tc := range []struct {
		parent, state string
		want          map[string]string
	}{
		{tp, "", map[string]string{"traceparent": tp}},
		{tp, "congo=t61rcWkgMzE", map[string]string{"traceparent": tp, "tracestate": "congo=t61rcWkgMzE"}},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", "", map[string]string{
			"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"}},
		{"", "congo=1", nil},
		{"00-00000000000000000000000000000000-00f067aa0ba902b7-01", "", nil}, // zero trace id
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", "", nil}, // zero parent id
		{"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "", nil}, // upper case
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "", nil}, // unknown version
		{tp + "-extra", "", nil},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0\xff", "congo=1", nil},
		// A tracestate that W3C refuses is dropped, the traceparent kept.
		{tp, "congo=\xff\xfe", map[string]string{"traceparent": tp}},
		{tp, "congo=caf\u00e9", map[string]string{"traceparent": tp}},
		{tp, "congo=a\x00b", map[string]string{"traceparent": tp}},
		{tp, "congo=a\tb", map[string]string{"traceparent": tp}},
		{tp, "congo", map[string]string{"traceparent": tp}},
		{tp, "congo=", map[string]string{"traceparent": tp}},
		{tp, "=1", map[string]string{"traceparent": tp}},
		{tp, "Congo=1", map[string]string{"traceparent": tp}},
		{tp, "1congo=1", map[string]string{"traceparent": tp}},
		{tp, "congo=a=b", map[string]string{"traceparent": tp}},
		{tp, "congo=1;rojo=2", map[string]string{"traceparent": tp}},
		{tp, "t@" + strings.Repeat("s", 15) + "=1", map[string]string{"traceparent": tp}},
		{tp, strings.Repeat("k", 257) + "=1", map[string]string{"traceparent": tp}},
		{tp, "congo=" + strings.Repeat("v", 257), map[string]string{"traceparent": tp}},
		{tp, "k=" + strings.Repeat("v", 511), map[string]string{"traceparent": tp}},    // over 512 bytes
		{tp, strings.Repeat("k=v,", 32) + "z=1", map[string]string{"traceparent": tp}}, // 33 members
		// Valid lists are kept as they came.
		{tp, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", map[string]string{"traceparent": tp,
			"tracestate": "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"}},
		{tp, " a1-_*/@sys_1=v a!~ , ,\tb=2 ", map[string]string{"traceparent": tp,
			"tracestate": " a1-_*/@sys_1=v a!~ , ,\tb=2 "}},
		{tp, "1tenant@vendor=x", map[string]string{"traceparent": tp, "tracestate": "1tenant@vendor=x"}},
		{tp, strings.TrimSuffix(strings.Repeat("k=v,", 32), ","), map[string]string{"traceparent": tp,
			"tracestate": strings.TrimSuffix(strings.Repeat("k=v,", 32), ",")}},
	} {
		got := ordersvc.TraceHeaders(ordersvc.ContextWithTraceContext(context.Background(), tc.parent, tc.state))
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("(%q, %q): headers = %v, want %v", tc.parent, tc.state, got, tc.want)
		}
	}
	if got := ordersvc.TraceHeaders(context.Background()); got != nil {
		t.Errorf("no trace context: %v", got)
	}
}

func TestMigrations(t *testing.T) {
	t.Parallel()
	ms := ordersvc.Migrations{
		{Version: 1, Name: "00001_orders.sql", AppliedAt: time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)},
		{Version: 2, Name: "00002_more.sql"},
	}
	if ms.Pending() != 1 || !ms[0].Applied() || ms[1].Applied() {
		t.Fatalf("pending = %d", ms.Pending())
	}
	want := "    1  00001_orders.sql                         applied 2031-05-06T07:08:09Z\n" +
		"    2  00002_more.sql                           pending\n"
	if got := ms.String(); got != want {
		t.Errorf("String =\n%q\nwant\n%q", got, want)
	}
}
