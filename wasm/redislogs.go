package wasm

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisLogs keeps each function version's recent log lines in Redis, so the
// portal API can show a vendor the lines written on any gateway replica.
// Lines are queued in memory and written by one background goroutine, never
// on the call's path; when the queue is full, lines are dropped (and
// counted) rather than slowing calls down.
type RedisLogs struct {
	client   redis.UniversalClient
	prefix   string
	maxLines int64
	ttl      time.Duration
	queue    chan logBatch
	log      *slog.Logger
	done     chan struct{}

	mu     sync.RWMutex
	closed bool
}

type logBatch struct {
	key   string
	lines []LogLine
}

// NewRedisLogs starts the writer. maxLines bounds each log (default 500).
func NewRedisLogs(client redis.UniversalClient, prefix string, maxLines int, log *slog.Logger) *RedisLogs {
	if maxLines <= 0 {
		maxLines = 500
	}
	if log == nil {
		log = slog.Default()
	}
	l := &RedisLogs{client: client, prefix: prefix, maxLines: int64(maxLines), ttl: 7 * 24 * time.Hour,
		queue: make(chan logBatch, 1024), log: log, done: make(chan struct{})}
	go l.write()
	return l
}

func (l *RedisLogs) key(logKey string) string { return l.prefix + "wasmlog:{" + logKey + "}" }

// Sink is the runtime's Config.LogSink.
func (l *RedisLogs) Sink(key string, lines []LogLine) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return
	}
	select {
	case l.queue <- logBatch{key, lines}:
	default:
		l.log.Warn("wasm: function log queue full; lines dropped", "lines", len(lines))
	}
}

func (l *RedisLogs) write() {
	defer close(l.done)
	for b := range l.queue {
		vals := make([]any, 0, len(b.lines))
		for _, line := range b.lines {
			j, _ := json.Marshal(line)
			vals = append(vals, j)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		k := l.key(b.key)
		_, err := l.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.RPush(ctx, k, vals...)
			p.LTrim(ctx, k, -l.maxLines, -1)
			p.Expire(ctx, k, l.ttl)
			return nil
		})
		cancel()
		if err != nil {
			l.log.Warn("wasm: could not keep function log lines", "err", err)
		}
	}
}

// Lines returns the log of one function version, oldest line first.
func (l *RedisLogs) Lines(ctx context.Context, functionID string, version int) ([]LogLine, error) {
	raw, err := l.client.LRange(ctx, l.key(LogKey(functionID, version)), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("read function log: %w", err)
	}
	out := make([]LogLine, 0, len(raw))
	for _, r := range raw {
		var line LogLine
		if json.Unmarshal([]byte(r), &line) == nil {
			out = append(out, line)
		}
	}
	return out, nil
}

// Close stops the writer after the queued lines are written.
func (l *RedisLogs) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	close(l.queue)
	l.mu.Unlock()
	<-l.done
}
