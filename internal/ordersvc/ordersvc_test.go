package ordersvc_test

import (
	"context"
	"encoding/hex"
	"reflect"
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
	for _, bad := range []string{"", "x", s + "A", s[:len(s)-1], "AAbgna21yoABkKAAAABwAIAAAAAAAAD/"} {
		if _, ok := ordersvc.DecodeCursor(bad); ok {
			t.Errorf("DecodeCursor(%q) accepted", bad)
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
