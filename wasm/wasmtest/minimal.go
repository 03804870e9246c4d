// Package wasmtest builds tiny WebAssembly modules by hand, with no
// toolchain, for tests and benchmarks of the wasm runtime.
package wasmtest

import "encoding/binary"

// Spec describes a hand-assembled module: no toolchain, a few
// hundred bytes, for validation cases and the per-call floor.
type Spec struct {
	Msg         string // written to stdout by _start
	StartName   string // export name of the entry point; "" means _start
	NoMemExport bool   // leave memory unexported
	ExtraImport [2]string
	Loop        bool   // _start loops forever instead of writing
	MinPages    uint32 // memory minimum; 0 means 1
}

// MinimalModule encodes spec as a WebAssembly binary. The module imports
// wasi_snapshot_preview1.fd_write and proc_exit, keeps an iovec at address 0
// pointing at msg at address 16, and its _start writes msg to fd 1 and calls
// proc_exit(0).
func MinimalModule(spec Spec) []byte {
	if spec.StartName == "" {
		spec.StartName = "_start"
	}
	if spec.MinPages == 0 {
		spec.MinPages = 1
	}
	const (
		i32     = 0x7f
		funcTyp = 0x60
	)
	var out []byte
	out = append(out, 0, 'a', 's', 'm', 1, 0, 0, 0)
	// Types: 0 = fd_write (i32 i32 i32 i32) -> i32, 1 = proc_exit (i32) -> (), 2 = () -> ().
	out = AppendSection(out, 1, []byte{3,
		funcTyp, 4, i32, i32, i32, i32, 1, i32,
		funcTyp, 1, i32, 0,
		funcTyp, 0, 0})
	imports := [][3]string{{"wasi_snapshot_preview1", "fd_write", "0"}, {"wasi_snapshot_preview1", "proc_exit", "1"}}
	if spec.ExtraImport[0] != "" {
		imports = append(imports, [3]string{spec.ExtraImport[0], spec.ExtraImport[1], "2"})
	}
	imp := []byte{byte(len(imports))}
	for _, im := range imports {
		imp = AppendName(imp, im[0])
		imp = AppendName(imp, im[1])
		imp = append(imp, 0x00, im[2][0]-'0')
	}
	out = AppendSection(out, 2, imp)
	out = AppendSection(out, 3, []byte{1, 2}) // one function of type 2
	mem := []byte{1, 0x00}                    // one memory, min only
	mem = binary.AppendUvarint(mem, uint64(spec.MinPages))
	out = AppendSection(out, 5, mem)
	start := byte(len(imports))
	exports := []byte{}
	n := byte(1)
	exports = AppendName(exports, spec.StartName)
	exports = append(exports, 0x00, start)
	if !spec.NoMemExport {
		exports = AppendName(exports, "memory")
		exports = append(exports, 0x02, 0)
		n++
	}
	out = AppendSection(out, 7, append([]byte{n}, exports...))
	var body []byte
	if spec.Loop {
		body = []byte{0, 0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b} // loop br 0 end end
	} else {
		body = []byte{0,
			0x41, 1, 0x41, 0, 0x41, 1, 0x41, 8, 0x10, 0, 0x1a, // drop(fd_write(1, iovs=0, 1, nwritten=8))
			0x41, 0, 0x10, 1, // proc_exit(0)
			0x0b}
	}
	code := binary.AppendUvarint([]byte{1}, uint64(len(body)))
	out = AppendSection(out, 10, append(code, body...))
	data := make([]byte, 16, 16+len(spec.Msg))
	binary.LittleEndian.PutUint32(data[0:], 16)
	binary.LittleEndian.PutUint32(data[4:], uint32(len(spec.Msg)))
	data = append(data, spec.Msg...)
	seg := []byte{1, 0x00, 0x41, 0, 0x0b} // one active segment at i32.const 0
	seg = binary.AppendUvarint(seg, uint64(len(data)))
	out = AppendSection(out, 11, append(seg, data...))
	return out
}

// MinimalReactor encodes a hand-assembled WASI reactor for instance reuse
// (the reuse ABI of the wasm package doc): it imports only
// wasi_snapshot_preview1.fd_write, exports memory, an empty _initialize and
// handle, which writes msg to fd 1 and returns 0. It does not read its
// request; the per-call floor of a reused instance.
func MinimalReactor(msg string) []byte {
	const (
		i32     = 0x7f
		funcTyp = 0x60
	)
	out := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	// Types: 0 = fd_write (i32 i32 i32 i32) -> i32, 1 = () -> (), 2 = () -> i32.
	out = AppendSection(out, 1, []byte{3,
		funcTyp, 4, i32, i32, i32, i32, 1, i32,
		funcTyp, 0, 0,
		funcTyp, 0, 1, i32})
	imp := AppendName(AppendName([]byte{1}, "wasi_snapshot_preview1"), "fd_write")
	out = AppendSection(out, 2, append(imp, 0x00, 0))
	out = AppendSection(out, 3, []byte{2, 1, 2})    // _initialize: type 1, handle: type 2
	out = AppendSection(out, 5, []byte{1, 0x00, 1}) // one memory, min 1 page
	exp := AppendName([]byte{3}, "_initialize")
	exp = append(exp, 0x00, 1)
	exp = AppendName(exp, "handle")
	exp = append(exp, 0x00, 2)
	exp = AppendName(exp, "memory")
	exp = append(exp, 0x02, 0)
	out = AppendSection(out, 7, exp)
	initBody := []byte{0, 0x0b}
	handleBody := []byte{0,
		0x41, 1, 0x41, 0, 0x41, 1, 0x41, 8, 0x10, 0, 0x1a, // drop(fd_write(1, iovs=0, 1, nwritten=8))
		0x41, 0, // return 0
		0x0b}
	code := []byte{2}
	code = binary.AppendUvarint(code, uint64(len(initBody)))
	code = append(code, initBody...)
	code = binary.AppendUvarint(code, uint64(len(handleBody)))
	code = append(code, handleBody...)
	out = AppendSection(out, 10, code)
	data := make([]byte, 16, 16+len(msg))
	binary.LittleEndian.PutUint32(data[0:], 16)
	binary.LittleEndian.PutUint32(data[4:], uint32(len(msg)))
	data = append(data, msg...)
	seg := []byte{1, 0x00, 0x41, 0, 0x0b} // one active segment at i32.const 0
	seg = binary.AppendUvarint(seg, uint64(len(data)))
	out = AppendSection(out, 11, append(seg, data...))
	return out
}

// AppendSection appends a module section to out: its id, its length and
// its body. Tests that hand-assemble modules use it with AppendName.
func AppendSection(out []byte, id byte, body []byte) []byte {
	out = append(out, id)
	out = binary.AppendUvarint(out, uint64(len(body)))
	return append(out, body...)
}

// AppendName appends a length-prefixed name (an import's module or field,
// an export's name) to b.
func AppendName(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}
