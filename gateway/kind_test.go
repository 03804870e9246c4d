package gateway_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"testing"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/backend"
	"github.com/fnmarket/fnmarket/catalog"
	"github.com/fnmarket/fnmarket/gateway"
)

// greetingKind is a backend kind only this test knows: the function answers
// the text its backend document holds.
type greetingKind struct{}

func (greetingKind) Type() string { return "greeting" }

func (greetingKind) Schema() backend.Schema { return backend.Schema{} }

func (greetingKind) Prepare(_ context.Context, v fnmarket.Validation, doc json.RawMessage) json.RawMessage {
	var in struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if !backend.Decode(v, doc, &in) {
		return nil
	}
	return backend.Spec(map[string]string{"text": in.Text})
}

func (greetingKind) Invoke(w http.ResponseWriter, r *http.Request, call *gateway.Invocation) (gateway.Outcome, error) {
	var spec struct {
		Text string `json:"text"`
	}
	if err := json.Unmarshal(call.Route.Version.Backend.Spec, &spec); err != nil {
		return gateway.Outcome{}, err
	}
	w.Header().Set("X-Compute-Ms", "1")
	w.Header().Set("Content-Length", strconv.Itoa(len(spec.Text)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(spec.Text))
	return gateway.Outcome{Reached: true, Status: http.StatusOK, ComputeMs: 1, HeadersSent: true}, nil
}

// TestRegisterKindsRunsATestOnlyKind: a kind added in a test, beside the
// built-in http kind, runs its calls once registered; nothing in the gateway
// names it.
func TestRegisterKindsRunsATestOnlyKind(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.routes.addVersion("acme", "hello", 1, "", true, func(v *catalog.Version) {
		v.Backend = catalog.Backend{Type: "greeting", Spec: json.RawMessage(`{"text":"hello from a test kind"}`)}
	})
	if resp, _ := e.get("/v1/invoke/acme/hello"); resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("before registering: status %d, want 500 (no invoker)", resp.StatusCode)
	}
	kinds, err := backend.NewRegistry(gateway.HTTPKind{}, greetingKind{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.gw.RegisterKinds(kinds); err != nil {
		t.Fatal(err)
	}
	resp, body := e.get("/v1/invoke/acme/hello")
	if got, want := resp.StatusCode, http.StatusOK; got != want {
		t.Fatalf("status %d, want %d: %s", got, want, body)
	}
	if got, want := body, "hello from a test kind"; got != want {
		t.Errorf("answer %q, want %q", got, want)
	}
	if n := len(e.meter.recorded()); n != 1 {
		t.Errorf("%d calls metered, want 1", n)
	}
}

// TestRegisterKindsRefusesAKindWithoutInvoker: a version the API would accept
// must be one the gateway can run, so such a kind stops the start.
func TestRegisterKindsRefusesAKindWithoutInvoker(t *testing.T) {
	e := newEnv(t, envOptions{})
	// The greeting kind with its Invoke method hidden.
	kinds, err := backend.NewRegistry(struct{ backend.Kind }{greetingKind{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.gw.RegisterKinds(kinds); err == nil {
		t.Error("a kind without an invoker was registered")
	}
}

// TestHTTPKindPrepare: the http kind is the one place a backend URL is
// checked when a version is created.
func TestHTTPKindPrepare(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		doc          string
		allowPrivate bool
		others       bool // the request has other problems already
		wantSpec     string
		wantField    string
	}{
		{doc: `{"type":"http","url":"https://203.0.114.7/fn"}`, wantSpec: `{"url":"https://203.0.114.7/fn"}`},
		{doc: `{"type":"http"}`, wantField: "backend.url"},
		{doc: `{"type":"http","url":"file:///etc/passwd"}`, wantField: "backend.url"},
		{doc: `{"type":"http","url":"https://user:pw@203.0.114.7/fn"}`, wantField: "backend.url"},
		{doc: `{"type":"http","url":"https://203.0.114.7/fn#top"}`, wantField: "backend.url"},
		{doc: `{"type":"http","url":"http://10.0.0.1/x"}`, wantField: "backend.url"},
		{doc: `{"type":"http","url":"http://10.0.0.1/x"}`, allowPrivate: true, wantSpec: `{"url":"http://10.0.0.1/x"}`},
		// Where a host resolves is only asked of otherwise valid input.
		{doc: `{"type":"http","url":"http://10.0.0.1/x"}`, others: true, wantSpec: `{"url":"http://10.0.0.1/x"}`},
		{doc: `{"type":"http","url":"https://203.0.114.7/fn","module_base64":"AA=="}`, wantField: "backend.module_base64"},
	} {
		v := fnmarket.Validation{}
		if tt.others {
			v.Add("pricing.per_call", "is required")
		}
		spec := gateway.HTTPKind{AllowPrivate: tt.allowPrivate}.Prepare(context.Background(), v, json.RawMessage(tt.doc))
		if tt.wantField != "" {
			if v[tt.wantField] == "" {
				t.Errorf("%s: problems %v, want one with %s", tt.doc, v, tt.wantField)
			}
			continue
		}
		if string(spec) != tt.wantSpec || len(v) != map[bool]int{true: 1, false: 0}[tt.others] {
			t.Errorf("%s: spec %s, problems %v; want %s", tt.doc, spec, v, tt.wantSpec)
		}
	}
}
