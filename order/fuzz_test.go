package order

import (
	"encoding/json"
	"math/big"
	"testing"
)

// FuzzCreateOrderValidate decodes arbitrary JSON into a CreateOrder and
// checks that validation never panics, that an invalid request always names
// its fields, and that a valid one yields an order whose total is the exact
// sum of its line items.
//
//	go test ./order -run '^$' -fuzz FuzzCreateOrderValidate -fuzztime 30s
func FuzzCreateOrderValidate(f *testing.F) {
	for _, seed := range []string{
		`{"customer_id": "c-42", "currency": "EUR",
		  "line_items": [{"product_id": "p-1", "product_type": "physical", "quantity": 2, "unit_price": 1999}]}`,
		`{"customer_id": "c", "currency": "JPY", "line_items": [
		  {"product_id": "a", "product_type": "digital", "quantity": 10000, "unit_price": 1000000000000},
		  {"product_id": "b", "product_type": "service", "quantity": 1, "unit_price": 0}]}`,
		`{"customer_id": "c", "currency": "USD", "line_items": [
		  {"product_id": "a", "product_type": "physical", "quantity": 9223372036854775807, "unit_price": 9223372036854775807}]}`,
		`{"customer_id": "c", "currency": "usd", "line_items": []}`,
		`{"customer_id": "\u0000", "currency": "EU\u00c9", "line_items": [{}]}`,
		`{"line_items": [{"quantity": -9223372036854775808, "unit_price": -1}]}`,
		`{}`, `null`, `[]`, `"x"`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var req CreateOrder
		if err := json.Unmarshal(data, &req); err != nil {
			return // the HTTP layer answers 400
		}
		err := req.Validate()
		o, nerr := NewOrder(req, seqIDs(), t0)
		if err != nil {
			if ErrorCode(err) != EINVALID || len(ErrorFields(err)) == 0 {
				t.Fatalf("Validate: %v, want EINVALID with fields", err)
			}
			if ErrorCode(nerr) != EINVALID {
				t.Fatalf("NewOrder accepted what Validate refused: %v", nerr)
			}
			return
		}
		if nerr != nil {
			t.Fatalf("NewOrder refused a valid request: %v", nerr)
		}
		want := new(big.Int)
		for _, li := range req.LineItems {
			want.Add(want, new(big.Int).Mul(big.NewInt(li.Quantity), big.NewInt(li.UnitPrice)))
		}
		if !want.IsInt64() || want.Int64() != o.TotalAmount {
			t.Fatalf("total %d, want %s", o.TotalAmount, want)
		}
		if o.TotalAmount < 0 || o.TotalAmount > MaxLineItems*MaxQuantity*MaxUnitPrice {
			t.Fatalf("total %d out of range", o.TotalAmount)
		}
		if len(o.LineItems) != len(req.LineItems) || o.Status != StatusPending || o.Version != 1 {
			t.Fatalf("order %+v does not match request %+v", o, req)
		}
		if !ValidCurrency(o.Currency) {
			t.Fatalf("currency %q accepted", o.Currency)
		}
		var sum int64
		for i, li := range o.LineItems {
			if li.Status != StatusPending || !li.ProductType.Valid() || li.Quantity < MinQuantity || li.Quantity > MaxQuantity ||
				li.UnitPrice < MinUnitPrice || li.UnitPrice > MaxUnitPrice {
				t.Fatalf("line item %d out of bounds: %+v", i, li)
			}
			sum += li.Amount()
		}
		if sum != o.TotalAmount {
			t.Fatalf("line items sum to %d, total is %d", sum, o.TotalAmount)
		}
	})
}
