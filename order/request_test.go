package order

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

func validCreate() CreateOrder {
	return CreateOrder{CustomerID: "c-42", Currency: "EUR", LineItems: []CreateLineItem{
		{ProductID: "p-1", ProductType: ProductPhysical, Quantity: 2, UnitPrice: 1999},
	}}
}

func nItems(n int, li CreateLineItem) []CreateLineItem {
	out := make([]CreateLineItem, n)
	for i := range out {
		out[i] = li
	}
	return out
}

func TestCreateOrderValidate(t *testing.T) {
	t.Parallel()
	p1 := CreateLineItem{ProductID: "p-1", ProductType: ProductDigital, Quantity: 1, UnitPrice: 100}
	maxItem := CreateLineItem{ProductID: "p-1", ProductType: ProductService, Quantity: MaxQuantity, UnitPrice: MaxUnitPrice}
	tests := []struct {
		name   string
		edit   func(r *CreateOrder)
		fields []FieldError // nil: valid
		total  int64        // of a valid request
	}{
		{"valid", func(r *CreateOrder) {}, nil, 3998},
		// line item count
		{"0 line items", func(r *CreateOrder) { r.LineItems = nil }, []FieldError{{"line_items", "must have at least 1 line item"}}, 0},
		{"empty line items", func(r *CreateOrder) { r.LineItems = []CreateLineItem{} }, []FieldError{{"line_items", "must have at least 1 line item"}}, 0},
		{"1 line item", func(r *CreateOrder) { r.LineItems = nItems(1, p1) }, nil, 100},
		{"100 line items", func(r *CreateOrder) { r.LineItems = nItems(100, p1) }, nil, 10_000},
		{"101 line items", func(r *CreateOrder) { r.LineItems = nItems(101, p1) }, []FieldError{{"line_items", "must have at most 100 line items, has 101"}}, 0},
		{"101 invalid line items give one error", func(r *CreateOrder) { r.LineItems = make([]CreateLineItem, 101) },
			[]FieldError{{"line_items", "must have at most 100 line items, has 101"}}, 0},
		// quantity
		{"quantity -1", func(r *CreateOrder) { r.LineItems[0].Quantity = -1 }, []FieldError{{"line_items[0].quantity", "must be between 1 and 10000"}}, 0},
		{"quantity 0", func(r *CreateOrder) { r.LineItems[0].Quantity = 0 }, []FieldError{{"line_items[0].quantity", "must be between 1 and 10000"}}, 0},
		{"quantity 1", func(r *CreateOrder) { r.LineItems[0].Quantity = 1 }, nil, 1999},
		{"quantity 10000", func(r *CreateOrder) { r.LineItems[0].Quantity = 10_000 }, nil, 19_990_000},
		{"quantity 10001", func(r *CreateOrder) { r.LineItems[0].Quantity = 10_001 }, []FieldError{{"line_items[0].quantity", "must be between 1 and 10000"}}, 0},
		// unit price
		{"unit price -1", func(r *CreateOrder) { r.LineItems[0].UnitPrice = -1 }, []FieldError{{"line_items[0].unit_price", "must be between 0 and 1000000000000"}}, 0},
		{"unit price 0", func(r *CreateOrder) { r.LineItems[0].UnitPrice = 0 }, nil, 0},
		{"unit price 10^12", func(r *CreateOrder) { r.LineItems[0].UnitPrice = 1_000_000_000_000 }, nil, 2_000_000_000_000},
		{"unit price 10^12+1", func(r *CreateOrder) { r.LineItems[0].UnitPrice = 1_000_000_000_001 }, []FieldError{{"line_items[0].unit_price", "must be between 0 and 1000000000000"}}, 0},
		// total
		{"largest total", func(r *CreateOrder) { r.LineItems = nItems(100, maxItem) }, nil, 1_000_000_000_000_000_000},
		{"line item amount overflows", func(r *CreateOrder) { r.LineItems[0].Quantity = math.MaxInt64 / 2; r.LineItems[0].UnitPrice = 3 },
			[]FieldError{{"line_items[0].quantity", "must be between 1 and 10000"}, {"line_items", "the order total overflows"}}, 0},
		{"sum overflows", func(r *CreateOrder) {
			r.LineItems = nItems(2, CreateLineItem{ProductID: "p", ProductType: ProductPhysical, Quantity: 1, UnitPrice: math.MaxInt64/2 + 1})
		}, []FieldError{
			{"line_items[0].unit_price", "must be between 0 and 1000000000000"},
			{"line_items[1].unit_price", "must be between 0 and 1000000000000"},
			{"line_items", "the order total overflows"}}, 0},
		{"sum reaches MaxInt64 exactly", func(r *CreateOrder) {
			r.LineItems = []CreateLineItem{
				{ProductID: "p", ProductType: ProductPhysical, Quantity: 1, UnitPrice: math.MaxInt64 - 1},
				{ProductID: "p", ProductType: ProductPhysical, Quantity: 1, UnitPrice: 1}}
		}, []FieldError{{"line_items[0].unit_price", "must be between 0 and 1000000000000"}}, 0},
		// currency
		{"currency missing", func(r *CreateOrder) { r.Currency = "" }, []FieldError{{"currency", "is required"}}, 0},
		{"currency lower case", func(r *CreateOrder) { r.Currency = "eur" }, []FieldError{{"currency", "must be three upper-case letters (ISO 4217)"}}, 0},
		{"currency two letters", func(r *CreateOrder) { r.Currency = "EU" }, []FieldError{{"currency", "must be three upper-case letters (ISO 4217)"}}, 0},
		{"currency four letters", func(r *CreateOrder) { r.Currency = "EURO" }, []FieldError{{"currency", "must be three upper-case letters (ISO 4217)"}}, 0},
		{"currency digits", func(r *CreateOrder) { r.Currency = "978" }, []FieldError{{"currency", "must be three upper-case letters (ISO 4217)"}}, 0},
		{"currency not ISO", func(r *CreateOrder) { r.Currency = "ABC" }, []FieldError{{"currency", "is not an ISO 4217 currency code"}}, 0},
		{"currency XXX", func(r *CreateOrder) { r.Currency = "XXX" }, []FieldError{{"currency", "is not an ISO 4217 currency code"}}, 0},
		{"currency JPY", func(r *CreateOrder) { r.Currency = "JPY" }, nil, 3998},
		// ids
		{"customer id missing", func(r *CreateOrder) { r.CustomerID = "" }, []FieldError{{"customer_id", "is required"}}, 0},
		{"customer id 128 characters", func(r *CreateOrder) { r.CustomerID = strings.Repeat("é", 128) }, nil, 3998},
		{"customer id 129 characters", func(r *CreateOrder) { r.CustomerID = strings.Repeat("c", 129) }, []FieldError{{"customer_id", "must be at most 128 characters"}}, 0},
		{"customer id control", func(r *CreateOrder) { r.CustomerID = "c\n42" }, []FieldError{{"customer_id", "must not contain control characters"}}, 0},
		{"customer id DEL", func(r *CreateOrder) { r.CustomerID = "c\x7f" }, []FieldError{{"customer_id", "must not contain control characters"}}, 0},
		{"customer id bad UTF-8", func(r *CreateOrder) { r.CustomerID = "c\xff" }, []FieldError{{"customer_id", "must be valid UTF-8"}}, 0},
		{"customer id padded", func(r *CreateOrder) { r.CustomerID = " c-42" }, []FieldError{{"customer_id", "must not begin or end with white space"}}, 0},
		{"customer id blank", func(r *CreateOrder) { r.CustomerID = "   " }, []FieldError{{"customer_id", "must not begin or end with white space"}}, 0},
		{"product id missing", func(r *CreateOrder) { r.LineItems[0].ProductID = "" }, []FieldError{{"line_items[0].product_id", "is required"}}, 0},
		{"product id 129", func(r *CreateOrder) { r.LineItems[0].ProductID = strings.Repeat("p", 129) }, []FieldError{{"line_items[0].product_id", "must be at most 128 characters"}}, 0},
		{"product type missing", func(r *CreateOrder) { r.LineItems[0].ProductType = "" }, []FieldError{{"line_items[0].product_type", "must be one of physical, digital, service"}}, 0},
		{"product type unknown", func(r *CreateOrder) { r.LineItems[0].ProductType = "Physical" }, []FieldError{{"line_items[0].product_type", "must be one of physical, digital, service"}}, 0},
		// several at once, in field order
		{"everything wrong", func(r *CreateOrder) {
			*r = CreateOrder{LineItems: []CreateLineItem{p1, {}}}
		}, []FieldError{
			{"customer_id", "is required"},
			{"currency", "is required"},
			{"line_items[1].product_id", "is required"},
			{"line_items[1].product_type", "must be one of physical, digital, service"},
			{"line_items[1].quantity", "must be between 1 and 10000"},
		}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := validCreate()
			tt.edit(&r)
			err := r.Validate()
			if tt.fields == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				o, err := NewOrder(r, seqIDs(), t0)
				if err != nil {
					t.Fatalf("NewOrder: %v", err)
				}
				assertEqual(t, "total", o.TotalAmount, tt.total)
				assertEqual(t, "line items", len(o.LineItems), len(r.LineItems))
				return
			}
			assertCode(t, err, EINVALID, "The order is invalid.")
			assertEqual(t, "fields", ErrorFields(err), tt.fields)
			_, err = NewOrder(r, seqIDs(), t0)
			assertEqual(t, "NewOrder fields", ErrorFields(err), tt.fields)
		})
	}
}

func TestConfirmPaymentValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		p      ConfirmPayment
		fields []FieldError
	}{
		{ConfirmPayment{"pay_1", 3998, "EUR"}, nil},
		{ConfirmPayment{"pay_1", 0, "USD"}, nil},
		{ConfirmPayment{"pay_1", -1, "EUR"}, []FieldError{{"amount", "must not be negative"}}},
		{ConfirmPayment{"", 1, "EUR"}, []FieldError{{"payment_id", "is required"}}},
		{ConfirmPayment{strings.Repeat("p", 129), 1, "EUR"}, []FieldError{{"payment_id", "must be at most 128 characters"}}},
		{ConfirmPayment{"pay_1", 1, "QQQ"}, []FieldError{{"currency", "is not an ISO 4217 currency code"}}},
		{ConfirmPayment{"pay\r", 1, ""}, []FieldError{{"payment_id", "must not contain control characters"}, {"currency", "is required"}}},
	}
	for _, tt := range tests {
		err := tt.p.Validate()
		if tt.fields == nil {
			assertEqual(t, "Validate("+tt.p.PaymentID+")", err, error(nil))
			continue
		}
		assertCode(t, err, EINVALID, "The payment confirmation is invalid.")
		assertEqual(t, "fields", ErrorFields(err), tt.fields)
	}
}

func TestTransitionRequestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		r      TransitionRequest
		fields []FieldError
	}{
		{TransitionRequest{To: StatusCancelled, Reason: "customer asked"}, nil},
		{TransitionRequest{To: StatusPreparing}, nil},
		{TransitionRequest{To: StatusCancelled, Reason: strings.Repeat("é", 500)}, nil},
		{TransitionRequest{To: StatusCancelled, Reason: strings.Repeat("r", 501)}, []FieldError{{"reason", "must be at most 500 characters"}}},
		{TransitionRequest{To: StatusCancelled, Reason: "line\nbreak"}, []FieldError{{"reason", "must not contain control characters"}}},
		{TransitionRequest{To: ""}, []FieldError{{"to", "is required"}}},
		{TransitionRequest{To: "CANCELLED"}, []FieldError{{"to", "is not a known status"}}},
	}
	for _, tt := range tests {
		err := tt.r.Validate()
		if tt.fields == nil {
			assertEqual(t, "Validate", err, error(nil))
			continue
		}
		assertCode(t, err, EINVALID, "The transition request is invalid.")
		assertEqual(t, "fields", ErrorFields(err), tt.fields)
	}
}

func TestCheckedArithmetic(t *testing.T) {
	t.Parallel()
	mul := []struct {
		a, b int64
		want int64
		ok   bool
	}{
		{0, math.MaxInt64, 0, true},
		{math.MinInt64, 0, 0, true},
		{1, math.MaxInt64, math.MaxInt64, true},
		{-1, math.MaxInt64, -math.MaxInt64, true},
		{10_000, 1_000_000_000_000, 10_000_000_000_000_000, true},
		{3_037_000_499, 3_037_000_499, 9_223_372_030_926_249_001, true},
		{3_037_000_500, 3_037_000_500, 0, false},
		{math.MaxInt64/2 + 1, 2, 0, false},
		{math.MinInt64, -1, 0, false},
		{-1, math.MinInt64, 0, false},
		{math.MinInt64, 1, math.MinInt64, true},
	}
	for _, tt := range mul {
		got, ok := mulInt64(tt.a, tt.b)
		if got != tt.want || ok != tt.ok {
			t.Errorf("mulInt64(%d, %d) = %d, %v; want %d, %v", tt.a, tt.b, got, ok, tt.want, tt.ok)
		}
	}
	add := []struct {
		a, b int64
		want int64
		ok   bool
	}{
		{math.MaxInt64 - 1, 1, math.MaxInt64, true},
		{math.MaxInt64, 1, 0, false},
		{math.MinInt64 + 1, -1, math.MinInt64, true},
		{math.MinInt64, -1, 0, false},
		{math.MaxInt64, math.MinInt64, -1, true},
	}
	for _, tt := range add {
		got, ok := addInt64(tt.a, tt.b)
		if got != tt.want || ok != tt.ok {
			t.Errorf("addInt64(%d, %d) = %d, %v; want %d, %v", tt.a, tt.b, got, ok, tt.want, tt.ok)
		}
	}
}

func TestValidCurrency(t *testing.T) {
	t.Parallel()
	for code, want := range map[string]bool{
		"EUR": true, "USD": true, "JPY": true, "GBP": true, "CHF": true, "BHD": true, "XOF": true, "ZWG": true,
		"eur": false, "": false, "XXX": false, "XTS": false, "XAU": false, "ABC": false, "EURO": false, "US": false,
	} {
		if got := ValidCurrency(code); got != want {
			t.Errorf("ValidCurrency(%q) = %v, want %v", code, got, want)
		}
	}
	assertEqual(t, "number of currencies", len(currencies), 157)
	assertEqual(t, "no duplicates in the list", len(strings.Fields(iso4217)), 157)
}

func TestNewOrder(t *testing.T) {
	t.Parallel()
	req := CreateOrder{CustomerID: "c-42", Currency: "EUR", LineItems: []CreateLineItem{
		{ProductID: "p-1", ProductType: ProductPhysical, Quantity: 2, UnitPrice: 1999},
		{ProductID: "p-2", ProductType: ProductService, Quantity: 1, UnitPrice: 0},
	}}
	now := time.Date(2026, 3, 14, 16, 9, 26, 535897932, time.FixedZone("CET", 3600))
	o, err := NewOrder(req, seqIDs(), now)
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2026, 3, 14, 15, 9, 26, 535897000, time.UTC)
	assertEqual(t, "order", o, Order{
		ID: id(1), CustomerID: "c-42", Currency: "EUR", Status: StatusPending, TotalAmount: 3998, Version: 1,
		CreatedAt: want, UpdatedAt: want,
		LineItems: []LineItem{
			{ID: id(2), ProductID: "p-1", ProductType: ProductPhysical, Quantity: 2, UnitPrice: 1999, Status: StatusPending},
			{ID: id(3), ProductID: "p-2", ProductType: ProductService, Quantity: 1, UnitPrice: 0, Status: StatusPending},
		},
	})
	assertEqual(t, "LineItem lookup", o.LineItem(id(3)).ProductID, "p-2")
	if o.LineItem(id(9)) != nil {
		t.Error("LineItem of an unknown id is not nil")
	}
}

func TestNewOrderDefaultIDs(t *testing.T) {
	t.Parallel()
	o, err := NewOrder(validCreate(), nil, t0)
	if err != nil {
		t.Fatal(err)
	}
	assertEqual(t, "order id version", o.ID.Version(), uuid.Version(7))
	assertEqual(t, "line item id version", o.LineItems[0].ID.Version(), uuid.Version(7))
	if o.ID == o.LineItems[0].ID {
		t.Error("order and line item share an id")
	}
}

func TestNewOrderIDFailure(t *testing.T) {
	t.Parallel()
	boom := errors.New("entropy exhausted")
	_, err := NewOrder(validCreate(), func() (uuid.UUID, error) { return uuid.Nil, boom }, t0)
	assertCode(t, err, EINTERNAL, "Internal error.")
	if !errors.Is(err, boom) {
		t.Errorf("err = %v, does not wrap the IDFunc's error", err)
	}
}
