package wasm

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/fnmarket/fnmarket/backend"
	"github.com/fnmarket/fnmarket/catalog"
	"github.com/fnmarket/fnmarket/gateway"
)

// invoke runs one call of module sha through the gateway invoker.
func invoke(t *testing.T, inv *Kind, sha string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "/v1/invoke/v/f", nil)
	call := &gateway.Invocation{ID: "0123", Timeout: 5 * time.Second, Route: catalog.Route{
		FunctionID: "fn", Version: catalog.Version{Version: 1, Backend: catalog.Backend{Type: BackendWasm, Spec: backend.Spec(spec{ModuleSHA256: sha})}},
	}}
	if _, err := inv.Invoke(w, r, call); err != nil {
		t.Fatalf("invoke: %v", err)
	}
	return w
}

// TestInvokerDropsCookies: a module's Set-Cookie and Set-Cookie2 never reach
// the caller (functions answer on the portal's origin), and its answer
// carries Content-Security-Policy: sandbox.
func TestInvokerDropsCookies(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t, Config{}, nil)
	info, err := rt.Prepare(context.Background(), minimalModule(minimalSpec{
		Msg: "Set-Cookie: fnm_session=stolen; Path=/\nSet-Cookie2: a=b\nContent-Type: text/html\n\n<script>1</script>",
	}))
	if err != nil {
		t.Fatal(err)
	}
	w := invoke(t, NewKind(rt), info.SHA256)
	h := w.Result().Header
	if w.Code != 200 || w.Body.String() != "<script>1</script>" || h.Get("Content-Type") != "text/html" {
		t.Fatalf("answer %d %q %v, want 200 with the module's body", w.Code, w.Body, h)
	}
	for _, k := range []string{"Set-Cookie", "Set-Cookie2"} {
		if v, ok := h[k]; ok {
			t.Errorf("%s = %q reached the caller", k, v)
		}
	}
	if csp := h.Values("Content-Security-Policy"); !slices.Contains(csp, "sandbox") {
		t.Errorf("Content-Security-Policy = %q, want sandbox", csp)
	}
}
