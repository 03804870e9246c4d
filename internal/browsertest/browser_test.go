package browsertest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// recorder passes everything to the real test but collects Errorf calls, so
// a test can see what the browser checks report.
type recorder struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func TestHelpersAndConsoleErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/app.js" {
			w.Header().Set("Content-Type", "text/javascript")
			fmt.Fprint(w, `document.getElementById('go').addEventListener('click', () => {
				document.getElementById('out').textContent = 'hello ' + document.getElementById('name').value;
				if (document.getElementById('name').value === 'bad') console.error('boom');
			});`)
			return
		}
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, `<!doctype html><main><input id="name"><button id="go">Go</button><p id="out"></p></main><script src="/app.js"></script>`)
	}))
	defer srv.Close()
	dir := t.TempDir()
	rec := &recorder{TB: t}
	b := New(rec, Options{ShotsDir: dir, Prefix: "unit-"})
	b.Do("greet", Navigate(srv.URL+"/"), Visible("#go"), Fill("#name", "Ada"), Click("#go"), WaitText("#out", "hello Ada"), WaitLocation("/"))
	if got := b.Text("#out"); got != "hello Ada" {
		t.Errorf("text %q", got)
	}
	if len(rec.errs) != 0 {
		t.Fatalf("errors on a clean page: %v", rec.errs)
	}
	b.Do("console error", Fill("#name", "bad"), Click("#go"), WaitText("#out", "hello bad"))
	b.Do("settle", Steps(Fill("#name", "x"), Click("#go"), WaitText("#out", "hello x")))
	b.CheckConsole("end")
	if len(rec.errs) != 1 || !strings.Contains(rec.errs[0], "boom") {
		t.Errorf("console.error reported as %q, want one error with boom", rec.errs)
	}
	path := b.Shot("page")
	if path != filepath.Join(dir, "unit-page.png") {
		t.Errorf("screenshot at %s", path)
	}
	if st, err := os.Stat(path); err != nil || st.Size() == 0 {
		t.Errorf("screenshot: %v", err)
	}
}
