package order

import (
	"math"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on requests; the API documents them.
const (
	MinLineItems = 1
	MaxLineItems = 100
	MinQuantity  = 1
	MaxQuantity  = 10_000
	MinUnitPrice = 0
	MaxUnitPrice = 1_000_000_000_000 // 10^12 minor units

	// MaxIDLen bounds customer, product and payment ids and actors, in characters.
	MaxIDLen = 128
	// MaxReasonLen bounds the reason of a transition, in characters.
	MaxReasonLen = 500
)

// CreateOrder is the body of POST /api/v1/orders.
type CreateOrder struct {
	CustomerID string           `json:"customer_id"`
	Currency   string           `json:"currency"`
	LineItems  []CreateLineItem `json:"line_items"`
}

// CreateLineItem is one line item of a CreateOrder.
type CreateLineItem struct {
	ProductID   string      `json:"product_id"`
	ProductType ProductType `json:"product_type"`
	Quantity    int64       `json:"quantity"`
	UnitPrice   int64       `json:"unit_price"`
}

// Validate returns EINVALID listing every offending field, or nil.
func (r *CreateOrder) Validate() error {
	var fe fieldErrors
	checkID(&fe, "customer_id", r.CustomerID)
	checkCurrency(&fe, "currency", r.Currency)
	switch n := len(r.LineItems); {
	case n < MinLineItems:
		fe.add("line_items", "must have at least %d line item", MinLineItems)
	case n > MaxLineItems:
		// The items themselves are not checked: the error list stays bounded.
		fe.add("line_items", "must have at most %d line items, has %d", MaxLineItems, n)
	default:
		for i := range r.LineItems {
			r.LineItems[i].validate(&fe, "line_items["+strconv.Itoa(i)+"]")
		}
		if _, ok := r.total(); !ok {
			fe.add("line_items", "the order total overflows")
		}
	}
	return fe.err("The order is invalid.")
}

func (li *CreateLineItem) validate(fe *fieldErrors, path string) {
	checkID(fe, path+".product_id", li.ProductID)
	if !li.ProductType.Valid() {
		fe.add(path+".product_type", "must be one of physical, digital, service")
	}
	if li.Quantity < MinQuantity || li.Quantity > MaxQuantity {
		fe.add(path+".quantity", "must be between %d and %d", MinQuantity, MaxQuantity)
	}
	if li.UnitPrice < MinUnitPrice || li.UnitPrice > MaxUnitPrice {
		fe.add(path+".unit_price", "must be between %d and %d", MinUnitPrice, int64(MaxUnitPrice))
	}
}

// total returns Σ quantity × unit price, and false if any step overflows
// int64. Within the limits it cannot (100 × 10^4 × 10^12 = 10^18 < 2^63), but
// it is computed with checks all the same, for requests that break them.
func (r *CreateOrder) total() (int64, bool) {
	var total int64
	for _, li := range r.LineItems {
		amount, ok := mulInt64(li.Quantity, li.UnitPrice)
		if !ok {
			return 0, false
		}
		if total, ok = addInt64(total, amount); !ok {
			return 0, false
		}
	}
	return total, true
}

// ConfirmPayment is the body of POST /api/v1/orders/{id}/payment-confirmation.
type ConfirmPayment struct {
	PaymentID string `json:"payment_id"`
	Amount    int64  `json:"amount"`
	Currency  string `json:"currency"`
}

// Validate returns EINVALID listing every offending field, or nil. Whether
// amount and currency match the order is checked by Order.ConfirmPayment.
func (p *ConfirmPayment) Validate() error {
	var fe fieldErrors
	checkID(&fe, "payment_id", p.PaymentID)
	if p.Amount < 0 {
		fe.add("amount", "must not be negative")
	}
	checkCurrency(&fe, "currency", p.Currency)
	return fe.err("The payment confirmation is invalid.")
}

// TransitionRequest is the body of POST …/transitions for an order or a
// line item.
type TransitionRequest struct {
	To     Status `json:"to"`
	Reason string `json:"reason,omitempty"`
}

// Validate returns EINVALID listing every offending field, or nil. Whether
// the machine allows the transition is checked when it is applied.
func (t *TransitionRequest) Validate() error {
	var fe fieldErrors
	checkStatus(&fe, "to", t.To)
	checkReason(&fe, "reason", t.Reason)
	return fe.err("The transition request is invalid.")
}

// checkID checks a required, bounded, printable id.
func checkID(fe *fieldErrors, field, v string) {
	switch {
	case v == "":
		fe.add(field, "is required")
	case !utf8.ValidString(v):
		fe.add(field, "must be valid UTF-8")
	case utf8.RuneCountInString(v) > MaxIDLen:
		fe.add(field, "must be at most %d characters", MaxIDLen)
	case hasControl(v):
		fe.add(field, "must not contain control characters")
	case strings.TrimSpace(v) != v:
		fe.add(field, "must not begin or end with white space")
	}
}

// checkReason checks an optional, bounded, printable reason.
func checkReason(fe *fieldErrors, field, v string) {
	switch {
	case !utf8.ValidString(v):
		fe.add(field, "must be valid UTF-8")
	case utf8.RuneCountInString(v) > MaxReasonLen:
		fe.add(field, "must be at most %d characters", MaxReasonLen)
	case hasControl(v):
		fe.add(field, "must not contain control characters")
	}
}

func checkCurrency(fe *fieldErrors, field, v string) {
	switch {
	case v == "":
		fe.add(field, "is required")
	case !isThreeUpper(v):
		fe.add(field, "must be three upper-case letters (ISO 4217)")
	case !ValidCurrency(v):
		fe.add(field, "is not an ISO 4217 currency code")
	}
}

func checkStatus(fe *fieldErrors, field string, s Status) {
	switch {
	case s == "":
		fe.add(field, "is required")
	case !s.Known():
		fe.add(field, "is not a known status")
	}
}

func checkActor(actor string) error {
	var fe fieldErrors
	checkID(&fe, "actor", actor)
	return fe.err("The actor is invalid.")
}

func hasControl(s string) bool {
	return strings.IndexFunc(s, unicode.IsControl) >= 0
}

func isThreeUpper(s string) bool {
	if len(s) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}

// mulInt64 returns a × b and whether it fits in an int64.
func mulInt64(a, b int64) (int64, bool) {
	if a == 0 || b == 0 {
		return 0, true
	}
	c := a * b
	if c/b != a || (a == math.MinInt64 && b == -1) || (a == -1 && b == math.MinInt64) {
		return 0, false
	}
	return c, true
}

// addInt64 returns a + b and whether it fits in an int64.
func addInt64(a, b int64) (int64, bool) {
	c := a + b
	if (b > 0 && c < a) || (b < 0 && c > a) {
		return 0, false
	}
	return c, true
}
