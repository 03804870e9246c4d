package wasm

import (
	"context"
	"encoding/binary"
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
// test function driven by ?mode=) and reactor (the instance-reuse experiment).
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
		builds := [][]string{args, {"build", "-buildmode=c-shared", "-o", filepath.Join(dir, "reactor"), "github.com/fnmarket/fnmarket/wasm/testdata/reactor"}}
		for _, a := range builds {
			cmd := exec.Command("go", a...)
			cmd.Env = env
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go %v: %v\n%s", a, err, out)
				return
			}
		}
		builtGuests = map[string][]byte{}
		for _, name := range []string{"json-transform", "sha-hash", "guest", "reactor"} {
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
		rt, err := New(ctx, Config{CacheDir: sharedCacheDir}, sharedStore)
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

// minimalSpec describes a hand-assembled module: no toolchain, a few
// hundred bytes, for validation cases and the per-call floor.
type minimalSpec struct {
	msg         string // written to stdout by _start
	startName   string // export name of the entry point; "" means _start
	noMemExport bool   // leave memory unexported
	extraImport [2]string
	loop        bool   // _start loops forever instead of writing
	minPages    uint32 // memory minimum; 0 means 1
}

// minimalModule encodes spec as a WebAssembly binary. The module imports
// wasi_snapshot_preview1.fd_write and proc_exit, keeps an iovec at address 0
// pointing at msg at address 16, and its _start writes msg to fd 1 and calls
// proc_exit(0).
func minimalModule(spec minimalSpec) []byte {
	if spec.startName == "" {
		spec.startName = "_start"
	}
	if spec.minPages == 0 {
		spec.minPages = 1
	}
	const (
		i32     = 0x7f
		funcTyp = 0x60
	)
	var out []byte
	out = append(out, 0, 'a', 's', 'm', 1, 0, 0, 0)
	section := func(id byte, body []byte) {
		out = append(out, id)
		out = binary.AppendUvarint(out, uint64(len(body)))
		out = append(out, body...)
	}
	name := func(b []byte, s string) []byte {
		b = binary.AppendUvarint(b, uint64(len(s)))
		return append(b, s...)
	}
	// Types: 0 = fd_write (i32 i32 i32 i32) -> i32, 1 = proc_exit (i32) -> (), 2 = () -> ().
	section(1, []byte{3,
		funcTyp, 4, i32, i32, i32, i32, 1, i32,
		funcTyp, 1, i32, 0,
		funcTyp, 0, 0})
	imports := [][3]string{{"wasi_snapshot_preview1", "fd_write", "0"}, {"wasi_snapshot_preview1", "proc_exit", "1"}}
	if spec.extraImport[0] != "" {
		imports = append(imports, [3]string{spec.extraImport[0], spec.extraImport[1], "2"})
	}
	imp := []byte{byte(len(imports))}
	for _, im := range imports {
		imp = name(imp, im[0])
		imp = name(imp, im[1])
		imp = append(imp, 0x00, im[2][0]-'0')
	}
	section(2, imp)
	section(3, []byte{1, 2}) // one function of type 2
	mem := []byte{1, 0x00}   // one memory, min only
	mem = binary.AppendUvarint(mem, uint64(spec.minPages))
	section(5, mem)
	start := byte(len(imports))
	exports := []byte{}
	n := byte(1)
	exports = name(exports, spec.startName)
	exports = append(exports, 0x00, start)
	if !spec.noMemExport {
		exports = name(exports, "memory")
		exports = append(exports, 0x02, 0)
		n++
	}
	section(7, append([]byte{n}, exports...))
	var body []byte
	if spec.loop {
		body = []byte{0, 0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b} // loop br 0 end end
	} else {
		body = []byte{0,
			0x41, 1, 0x41, 0, 0x41, 1, 0x41, 8, 0x10, 0, 0x1a, // drop(fd_write(1, iovs=0, 1, nwritten=8))
			0x41, 0, 0x10, 1, // proc_exit(0)
			0x0b}
	}
	code := binary.AppendUvarint([]byte{1}, uint64(len(body)))
	section(10, append(code, body...))
	data := make([]byte, 16, 16+len(spec.msg))
	binary.LittleEndian.PutUint32(data[0:], 16)
	binary.LittleEndian.PutUint32(data[4:], uint32(len(spec.msg)))
	data = append(data, spec.msg...)
	seg := []byte{1, 0x00, 0x41, 0, 0x0b} // one active segment at i32.const 0
	seg = binary.AppendUvarint(seg, uint64(len(data)))
	section(11, append(seg, data...))
	return out
}
