package wasm

import (
	"github.com/fnmarket/fnmarket/wasm/wasmtest"

	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// The Go toolchain builds the guest modules once per test binary, and every
// runtime in it shares one disk compilation cache, so each Go module is
// compiled by wazero once (about a second each) and loaded from disk after.
var (
	buildOnce   sync.Once
	buildErr    error
	builtGuests map[string][]byte

	sharedCacheDir string

	sharedOnce    sync.Once
	sharedErr     error
	sharedRT      *Runtime
	sharedStore   *MemoryStore
	sharedModules map[string]string // guest name -> sha256
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fnmarket-wasm-cache-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sharedCacheDir = dir
	code := m.Run()
	if sharedRT != nil {
		_ = sharedRT.Close(context.Background())
	}
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// guestPackages are the Go programs the tests build for wasip1, by name.
var guestPackages = map[string]string{
	"json-transform": "github.com/fnmarket/fnmarket/examples/json-transform",
	"sha-hash":       "github.com/fnmarket/fnmarket/examples/sha-hash",
	"guest":          "github.com/fnmarket/fnmarket/wasm/testdata/guest",
}

// guests returns the built modules: json-transform, sha-hash, guest (the
// test function driven by ?mode=), reactor (the instance-reuse experiment)
// and reuse-echo (the instance-reuse example, a reactor).
func guests(t testing.TB) map[string][]byte {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "fnmarket-wasm-build-")
		if err != nil {
			buildErr = err
			return
		}
		defer os.RemoveAll(dir)
		env := append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
		args := []string{"build", "-o", dir + string(filepath.Separator)}
		for _, pkg := range guestPackages {
			args = append(args, pkg)
		}
		builds := [][]string{args,
			{"build", "-buildmode=c-shared", "-o", filepath.Join(dir, "reactor"), "github.com/fnmarket/fnmarket/wasm/testdata/reactor"},
			{"build", "-buildmode=c-shared", "-o", filepath.Join(dir, "reuse-echo"), "github.com/fnmarket/fnmarket/examples/reuse-echo"}}
		for _, a := range builds {
			cmd := exec.Command("go", a...)
			cmd.Env = env
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go %v: %v\n%s", a, err, out)
				return
			}
		}
		builtGuests = map[string][]byte{}
		for _, name := range []string{"json-transform", "sha-hash", "guest", "reactor", "reuse-echo"} {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				buildErr = err
				return
			}
			builtGuests[name] = b
		}
	})
	if buildErr != nil {
		t.Fatalf("build guest modules: %v", buildErr)
	}
	return builtGuests
}

// shared returns one runtime, used by the tests that only call modules, with
// every Go guest prepared in it.
func shared(t testing.TB) (*Runtime, map[string]string) {
	t.Helper()
	g := guests(t)
	sharedOnce.Do(func() {
		sharedStore = NewMemoryStore()
		ctx := context.Background()
		// Many parallel tests share this runtime: the process-wide bounds
		// (tested on their own runtimes in TestProcessWideBounds) must not
		// turn a slow -race run into ErrBusy here.
		rt, err := New(ctx, Config{CacheDir: sharedCacheDir, MaxConcurrency: 64, AdmissionWait: time.Minute}, sharedStore)
		if err != nil {
			sharedErr = err
			return
		}
		sharedRT = rt
		// Compile the three in parallel: under -race wazero's compiler is
		// slow, and this is most of the package's test time.
		sharedModules = map[string]string{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, name := range []string{"json-transform", "sha-hash", "guest"} {
			wg.Go(func() {
				info, err := rt.Prepare(ctx, g[name])
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					sharedErr = fmt.Errorf("prepare %s: %w", name, err)
					return
				}
				sharedModules[name] = info.SHA256
			})
		}
		wg.Wait()
	})
	if sharedErr != nil {
		t.Fatalf("shared runtime: %v", sharedErr)
	}
	return sharedRT, sharedModules
}

// newRuntime returns a runtime of its own for one test, on the shared disk
// cache unless cfg names another, closed at cleanup.
func newRuntime(t testing.TB, cfg Config, store ModuleStore) *Runtime {
	t.Helper()
	if cfg.CacheDir == "" {
		cfg.CacheDir = sharedCacheDir
	}
	if store == nil {
		store = NewMemoryStore()
	}
	rt, err := New(context.Background(), cfg, store)
	if err != nil {
		t.Fatalf("new runtime: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := rt.Close(ctx); err != nil {
			t.Errorf("close runtime: %v", err)
		}
	})
	return rt
}

// minimalSpec describes a hand-assembled module (see wasmtest.Spec).
type minimalSpec = wasmtest.Spec

// minimalModule encodes spec as a WebAssembly binary.
func minimalModule(spec minimalSpec) []byte { return wasmtest.MinimalModule(spec) }
