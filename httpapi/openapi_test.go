package httpapi

import (
	"bytes"
	"encoding/json"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/heraldhq/herald/order"
)

// openAPIDoc is the part of the document the tests read.
type openAPIDoc struct {
	OpenAPI    string                                 `json:"openapi"`
	Info       struct{ Version string }               `json:"info"`
	Paths      map[string]map[string]openAPIOperation `json:"paths"`
	Components struct {
		Schemas    map[string]json.RawMessage `json:"schemas"`
		Parameters map[string]struct {
			Name string `json:"name"`
			In   string `json:"in"`
		} `json:"parameters"`
	} `json:"components"`
}

type openAPIOperation struct {
	OperationID string                     `json:"operationId"`
	Parameters  []map[string]any           `json:"parameters"`
	RequestBody *struct{ Required bool }   `json:"requestBody"`
	Responses   map[string]json.RawMessage `json:"responses"`
	Security    []map[string][]string      `json:"security"`
}

func loadOpenAPI(t *testing.T, data []byte) openAPIDoc {
	t.Helper()
	var doc openAPIDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// TestOpenAPIMatchesRoutes fails when a route is registered on the mux but
// not documented, or documented but not registered.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	doc := loadOpenAPI(t, b.srv.openapi)

	registered := map[string]access{}
	for _, r := range b.srv.registered {
		registered[r.pattern] = r.access
	}
	documented := map[string]openAPIOperation{}
	for path, item := range doc.Paths {
		for method, op := range item {
			if !slices.Contains(httpMethods, method) {
				t.Errorf("%s: %q is not an HTTP method", path, method)
				continue
			}
			documented[strings.ToUpper(method)+" "+path] = op
		}
	}
	for _, p := range slices.Sorted(maps.Keys(registered)) {
		if _, ok := documented[p]; !ok {
			t.Errorf("route %q is not in the OpenAPI document", p)
		}
	}
	for _, p := range slices.Sorted(maps.Keys(documented)) {
		if _, ok := registered[p]; !ok {
			t.Errorf("the OpenAPI document has %q, which no route serves", p)
		}
	}
	if len(registered) != 18 || len(documented) != 18 {
		t.Errorf("%d routes registered, %d documented; want the same 18", len(registered), len(documented))
	}

	// Security follows the access each route is registered with.
	wantSecurity := map[access]string{
		public: `[]`,
		user:   `[{"apiToken":[]},{"adminToken":[]}]`,
		admin:  `[{"adminToken":[]}]`,
	}
	for p, a := range registered {
		op, ok := documented[p]
		if !ok {
			continue
		}
		got, _ := json.Marshal(op.Security)
		if op.Security == nil {
			got = []byte("null")
		}
		if string(got) != wantSecurity[a] {
			t.Errorf("%s: security %s, want %s", p, got, wantSecurity[a])
		}
		var want []string
		switch a {
		case user:
			want = append(want, "401", "500", "503")
		case admin:
			want = append(want, "401", "403", "500", "503")
		}
		if op.RequestBody != nil {
			want = append(want, "400", "413", "415")
		}
		if strings.Contains(p, "{") {
			want = append(want, "404")
		}
		for _, code := range want {
			if _, ok := op.Responses[code]; !ok {
				t.Errorf("%s: no %s response", p, code)
			}
		}
	}
}

func TestOpenAPIDocument(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.do(t, req{method: "GET", path: "/openapi.json"})
	if r.Code != 200 || r.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /openapi.json: %d %q", r.Code, r.Header.Get("Content-Type"))
	}
	if !bytes.Equal(r.Body, b.srv.openapi) {
		t.Error("served document differs from the built one")
	}
	doc := loadOpenAPI(t, r.Body)
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi %q", doc.OpenAPI)
	}
	if doc.Info.Version != "1.2.3-test" {
		t.Errorf("info.version %q, want the configured version", doc.Info.Version)
	}
	if raw := loadOpenAPI(t, OpenAPI()); raw.Info.Version != "dev" {
		t.Errorf("embedded info.version %q", raw.Info.Version)
	}

	// Every $ref resolves.
	var whole map[string]any
	if err := json.Unmarshal(r.Body, &whole); err != nil {
		t.Fatal(err)
	}
	refs := regexp.MustCompile(`"\$ref":\s*"#/([^"]+)"`).FindAllStringSubmatch(string(r.Body), -1)
	if len(refs) < 50 {
		t.Errorf("only %d $refs", len(refs))
	}
	for _, m := range refs {
		var node any = whole
		for part := range strings.SplitSeq(m[1], "/") {
			obj, ok := node.(map[string]any)
			if !ok {
				node = nil
				break
			}
			node = obj[part]
		}
		if node == nil {
			t.Errorf("$ref #/%s does not resolve", m[1])
		}
	}

	// Operation ids are unique; path parameters are declared.
	ids := map[string]bool{}
	pathParam := regexp.MustCompile(`\{(\w+)\}`)
	for path, item := range doc.Paths {
		for method, op := range item {
			if op.OperationID == "" || ids[op.OperationID] {
				t.Errorf("%s %s: missing or repeated operationId %q", method, path, op.OperationID)
			}
			ids[op.OperationID] = true
			declared := map[string]bool{}
			for _, p := range op.Parameters {
				if ref, ok := p["$ref"].(string); ok {
					c := doc.Components.Parameters[strings.TrimPrefix(ref, "#/components/parameters/")]
					if c.In == "path" {
						declared[c.Name] = true
					}
				}
			}
			for _, m := range pathParam.FindAllStringSubmatch(path, -1) {
				if !declared[m[1]] {
					t.Errorf("%s %s: path parameter %s is not declared", method, path, m[1])
				}
			}
		}
	}

	// The enums agree with the domain and the error codes.
	enum := func(schema string, path ...string) []string {
		var node any
		if err := json.Unmarshal(doc.Components.Schemas[schema], &node); err != nil {
			t.Fatal(err)
		}
		for _, p := range path {
			node = node.(map[string]any)[p]
		}
		var out []string
		for _, v := range node.(map[string]any)["enum"].([]any) {
			out = append(out, v.(string))
		}
		slices.Sort(out)
		return out
	}
	var allStatuses []string
	for _, m := range order.Machines() {
		for _, s := range m.States() {
			if !slices.Contains(allStatuses, string(s)) {
				allStatuses = append(allStatuses, string(s))
			}
		}
	}
	slices.Sort(allStatuses)
	if got := enum("Status"); !slices.Equal(got, allStatuses) {
		t.Errorf("Status enum %v, want %v", got, allStatuses)
	}
	var orderStatuses []string
	for _, s := range order.OrderMachine().States() {
		orderStatuses = append(orderStatuses, string(s))
	}
	slices.Sort(orderStatuses)
	if got := enum("OrderStatus"); !slices.Equal(got, orderStatuses) {
		t.Errorf("OrderStatus enum %v, want %v", got, orderStatuses)
	}
	var types []string
	for _, pt := range order.ProductTypes() {
		types = append(types, string(pt))
	}
	slices.Sort(types)
	if got := enum("ProductType"); !slices.Equal(got, types) {
		t.Errorf("ProductType enum %v, want %v", got, types)
	}
	var problemTypes []string
	for code := range codes {
		problemTypes = append(problemTypes, ProblemTypePrefix+code)
	}
	slices.Sort(problemTypes)
	if got := enum("Problem", "properties", "type"); !slices.Equal(got, problemTypes) {
		t.Errorf("Problem type enum %v, want %v", got, problemTypes)
	}
}
