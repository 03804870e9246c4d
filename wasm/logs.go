package wasm

import (
	"bytes"
	"container/list"
	"strings"
	"sync"
	"time"
)

// LogLine is one line of a function's log: a line its module wrote to stderr,
// or a note from the runtime about how a call ended (a trap, an exit code, a
// limit that was hit).
type LogLine struct {
	// Time is when the call that wrote the line finished.
	Time time.Time `json:"time"`
	// InvocationID is the call's X-Invocation-Id (Request.InvocationID).
	InvocationID string `json:"invocation_id"`
	// Source is "stderr" for the module's own output and "runtime" for notes
	// from fnmarket.
	Source string `json:"source"`
	// Text is the line without its newline, cut at maxLogLineBytes.
	Text string `json:"text"`
}

// Log sources.
const (
	SourceStderr  = "stderr"
	SourceRuntime = "runtime"
)

// maxLogLineBytes cuts single lines so that one huge line cannot push every
// other line out of a log.
const maxLogLineBytes = 1024

// logBook keeps the recent lines of each log key: at most maxBytes of text
// per key (oldest lines dropped first) and at most maxKeys keys (the least
// recently written key dropped first). It lives in memory, per process.
type logBook struct {
	maxBytes int
	maxKeys  int

	mu    sync.Mutex
	keys  map[string]*list.Element // of *keyLog
	order *list.List               // front is most recently written
}

type keyLog struct {
	key   string
	lines []LogLine
	bytes int
}

func newLogBook(maxBytes, maxKeys int) *logBook {
	return &logBook{maxBytes: maxBytes, maxKeys: maxKeys, keys: map[string]*list.Element{}, order: list.New()}
}

// append adds lines to key's log.
func (b *logBook) append(key string, lines []LogLine) {
	if len(lines) == 0 || b.maxBytes <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	el, ok := b.keys[key]
	if ok {
		b.order.MoveToFront(el)
	} else {
		el = b.order.PushFront(&keyLog{key: key})
		b.keys[key] = el
		for b.order.Len() > b.maxKeys {
			old := b.order.Back()
			b.order.Remove(old)
			delete(b.keys, old.Value.(*keyLog).key)
		}
	}
	kl := el.Value.(*keyLog)
	for _, l := range lines {
		kl.lines = append(kl.lines, l)
		kl.bytes += len(l.Text)
	}
	drop := 0
	for kl.bytes > b.maxBytes && drop < len(kl.lines) {
		kl.bytes -= len(kl.lines[drop].Text)
		drop++
	}
	if drop > 0 {
		kl.lines = append(kl.lines[:0:0], kl.lines[drop:]...)
	}
}

// lines returns a copy of key's log, oldest first.
func (b *logBook) lines(key string) []LogLine {
	b.mu.Lock()
	defer b.mu.Unlock()
	el, ok := b.keys[key]
	if !ok {
		return nil
	}
	return append([]LogLine(nil), el.Value.(*keyLog).lines...)
}

// stderrCapture is one call's stderr: it splits lines and keeps at most
// limit bytes of them, so a chatty module costs bounded memory.
type stderrCapture struct {
	limit     int
	kept      int
	partial   []byte
	lines     []string
	truncated bool
}

// Write implements io.Writer; it never fails, so a module's logging cannot
// change its behaviour.
func (s *stderrCapture) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 && !s.truncated {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			room := maxLogLineBytes + 1 - len(s.partial)
			s.partial = append(s.partial, p[:min(len(p), max(room, 0))]...)
			break
		}
		s.partial = append(s.partial, p[:min(i, max(maxLogLineBytes+1-len(s.partial), 0))]...)
		s.flushLine()
		p = p[i+1:]
	}
	return n, nil
}

// flushLine ends the partial line.
func (s *stderrCapture) flushLine() {
	line := cutLine(s.partial)
	s.partial = s.partial[:0]
	if s.kept+len(line) > s.limit {
		s.truncated = true
		return
	}
	s.kept += len(line)
	s.lines = append(s.lines, line)
}

// finish returns the captured lines, including an unterminated last one.
func (s *stderrCapture) finish() []string {
	if len(s.partial) > 0 && !s.truncated {
		s.flushLine()
	}
	return s.lines
}

// cutLine returns b as a string of at most maxLogLineBytes (plus an
// ellipsis when cut), without a rune split in two, and without a trailing
// carriage return.
func cutLine(b []byte) string {
	b = bytes.TrimSuffix(b, []byte("\r"))
	if len(b) <= maxLogLineBytes {
		return string(b)
	}
	return strings.ToValidUTF8(string(b[:maxLogLineBytes]), "") + "…"
}
