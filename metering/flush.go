package metering

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// flush is one batch of a shard's counters on its way to Redis; its id makes
// sending it again harmless.
type flush struct {
	id    string
	shard int
	agg   *aggregate
	size  int64 // bytes of its intent record, to bound the spool

	// Acknowledged, not yet confirmed in the database (MeterConfig.Confirmed);
	// guarded by Meter.mu.
	ackedAt      time.Time
	checkedAt    time.Time // applied marker last looked for in Redis
	missingSince time.Time // applied marker found missing from Redis
}

// flushScript applies one flush exactly once: the applied marker, set only if
// absent, makes a resend with the same id a no-op.
var flushScript = redis.NewScript(`
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return 0
end
local n = tonumber(ARGV[3])
local i = 4
for j = 1, n do
  redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1])
  i = i + 2
end
for k = 3, #KEYS do
  redis.call('INCRBY', KEYS[k], ARGV[i])
  redis.call('EXPIRE', KEYS[k], ARGV[2])
  i = i + 1
end
return 1
`)

// intentSize is the length of f's intent record, to bound the spool.
func intentSize(f *flush) int64 {
	b, _ := encodeRecord(spoolRecord{T: recFlush, ID: f.id, Shard: f.shard, Agg: f.agg})
	return int64(len(b))
}

// flushSender applies flushes to Redis, each exactly once by its id, and
// looks up their applied markers.
type flushSender struct {
	rdb        redis.UniversalClient
	ks         keyspace
	timeout    time.Duration // one round trip (MeterConfig.SendTimeout)
	appliedTTL time.Duration
	counterTTL time.Duration
	recordID   bool // write the flush id with its counts (MeterConfig.Confirmed)
}

// send applies f; sending it again is a no-op while Redis has its marker.
func (s flushSender) send(ctx context.Context, f *flush) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	keys, args := f.agg.scriptArgs(s.ks, f.shard, f.id, s.appliedTTL, s.counterTTL, s.recordID)
	if err := flushScript.Run(ctx, s.rdb, keys, args...).Err(); err != nil {
		return fmt.Errorf("run flush script: %w", err)
	}
	return nil
}

// markersPresent reports, per flush, whether Redis still has its applied
// marker.
func (s flushSender) markersPresent(ctx context.Context, fs []*flush) ([]bool, error) {
	cmds := make([]*redis.IntCmd, len(fs))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, f := range fs {
			cmds[i] = p.Exists(ctx, s.ks.applied(f.shard, f.id))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	present := make([]bool, len(fs))
	for i, c := range cmds {
		present[i] = c.Val() != 0
	}
	return present, nil
}
