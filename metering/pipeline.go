package metering

import (
	"context"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// scriptCall is one script invocation waiting for a pipeline.
type scriptCall struct {
	keys []string
	args []any
	done chan scriptResult
}

type scriptResult struct {
	res []any
	err error
}

// pipeliner sends concurrent invocations of one script to Redis together:
// each sender takes one waiting call and, without waiting for more, every
// call queued behind it, and sends them as one pipeline. A lone call goes at
// once, as it would alone; under load many calls share one round trip and
// one pair of syscalls, which is where an admission's cost goes.
type pipeliner struct {
	client  redis.Cmdable
	script  *redis.Script
	queue   chan *scriptCall
	timeout time.Duration
	maxPipe int
}

func newPipeliner(client redis.Cmdable, script *redis.Script, senders int, timeout time.Duration) *pipeliner {
	p := &pipeliner{client: client, script: script, queue: make(chan *scriptCall, 4096), timeout: timeout, maxPipe: 128}
	for i := 0; i < senders; i++ {
		go p.send()
	}
	return p
}

// run queues one invocation and waits for its answer or ctx.
func (p *pipeliner) run(ctx context.Context, keys []string, args ...any) ([]any, error) {
	c := &scriptCall{keys: keys, args: args, done: make(chan scriptResult, 1)}
	select {
	case p.queue <- c:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case r := <-c.done:
		return r.res, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (p *pipeliner) send() {
	batch := make([]*scriptCall, 0, p.maxPipe)
	for first := range p.queue {
		batch = append(batch[:0], first)
	more:
		for len(batch) < p.maxPipe {
			select {
			case c := <-p.queue:
				batch = append(batch, c)
			default:
				break more
			}
		}
		p.sendBatch(batch)
	}
}

func (p *pipeliner) sendBatch(batch []*scriptCall) {
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	if len(batch) == 1 {
		c := batch[0]
		res, err := p.script.Run(ctx, p.client, c.keys, c.args...).Slice()
		c.done <- scriptResult{res, err}
		return
	}
	pipe := p.client.Pipeline()
	cmds := make([]*redis.Cmd, len(batch))
	for i, c := range batch {
		cmds[i] = p.script.EvalSha(ctx, pipe, c.keys, c.args...)
	}
	_, _ = pipe.Exec(ctx)
	for i, c := range batch {
		res, err := cmds[i].Slice()
		if err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
			// The script is not loaded yet (a restarted Redis): Run loads it.
			res, err = p.script.Run(ctx, p.client, c.keys, c.args...).Slice()
		}
		c.done <- scriptResult{res, err}
	}
}
