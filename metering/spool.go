package metering

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Spool record types. A segment starts with a snapshot (header, the flushes
// not yet settled, the calls carried over not yet in any flush, and a
// snapshot-complete marker); after it come calls, flush intents, acks and
// confirmations in the order they happened.
const (
	recHeader   = "h" // segment header
	recCarry    = "g" // calls carried from an older segment, summed, not yet in any flush
	recSnapshot = "s" // the snapshot part of the segment is complete and synced
	recCall     = "c" // one recorded call
	recFlush    = "f" // flush intent: id, shard and exactly what it adds to Redis
	recAck      = "a" // Redis confirmed the flush with this id
	recConfirm  = "k" // the database holds these flushes (or the spool gave up on them)
)

// spoolTracked is the header version of a segment written by a Meter that
// keeps acknowledged flushes until the database confirms them: in it an ack
// leaves the flush pending until a confirm record. In older segments an ack
// settles the flush.
const spoolTracked = 2

// spoolRecord is one line of a spool segment.
type spoolRecord struct {
	T     string       `json:"t"`
	V     int          `json:"v,omitempty"` // header: spoolTracked or 0
	Call  *spooledCall `json:"call,omitempty"`
	ID    string       `json:"id,omitempty"`
	IDs   []string     `json:"ids,omitempty"` // confirm
	At    int64        `json:"at,omitempty"`  // ack: Unix milliseconds
	Shard int          `json:"shard,omitempty"`
	Agg   *aggregate   `json:"agg,omitempty"`
}

func encodeRecord(r spoolRecord) ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode spool record %s: %w", r.T, err)
	}
	return append(b, '\n'), nil
}

// spoolState is what replaying a segment recovers.
type spoolState struct {
	unacked []*flush
	// acked were acknowledged by Redis but not confirmed in the database;
	// only a tracked segment has them.
	acked   []*flush
	carried [NumShards]*aggregate
	tracked bool
}

// Flush states while replaying.
const (
	flushUnacked = iota
	flushAcked
	flushSettled
)

// replay is the state of one segment being read.
type replay struct {
	st       spoolState
	complete bool
	order    []*flush
	state    map[string]int
	byID     map[string]*flush
}

const segmentPrefix, segmentSuffix = "spool-", ".log"

func segmentName(seq int64) string {
	return fmt.Sprintf("%s%016d%s", segmentPrefix, seq, segmentSuffix)
}

// listSegments returns the spool segments in dir, oldest first.
func listSegments(dir string) ([]int64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list spool %s: %w", dir, err)
	}
	var seqs []int64
	for _, e := range entries {
		n := e.Name()
		if !strings.HasPrefix(n, segmentPrefix) || !strings.HasSuffix(n, segmentSuffix) {
			continue
		}
		seq, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(n, segmentPrefix), segmentSuffix), 10, 64)
		if err != nil {
			continue
		}
		seqs = append(seqs, seq)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	return seqs, nil
}

// replaySegment reads one segment. complete is false when the segment has no
// snapshot marker: it was cut short while being created and the segment
// before it still holds the truth. A torn last line (an OS crash mid-write)
// is skipped; badLines counts such lines.
func replaySegment(path string) (st spoolState, complete bool, badLines int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return st, false, 0, fmt.Errorf("open spool segment: %w", err)
	}
	defer f.Close()
	rp := &replay{state: map[string]int{}, byID: map[string]*flush{}}
	for i := range rp.st.carried {
		rp.st.carried[i] = newAggregate()
	}
	r := bufio.NewReaderSize(f, 1<<16)
	for {
		line, rerr := r.ReadBytes('\n')
		if len(line) > 0 {
			var rec spoolRecord
			if line[len(line)-1] != '\n' || json.Unmarshal(line, &rec) != nil {
				badLines++
			} else {
				if perr := rp.apply(rec); perr != nil {
					badLines++
				}
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return rp.st, false, badLines, fmt.Errorf("read spool segment %s: %w", path, rerr)
		}
	}
	for _, fl := range rp.order {
		switch rp.state[fl.id] {
		case flushUnacked:
			rp.st.unacked = append(rp.st.unacked, fl)
		case flushAcked:
			rp.st.acked = append(rp.st.acked, fl)
		}
	}
	return rp.st, rp.complete, badLines, nil
}

func (rp *replay) apply(rec spoolRecord) error {
	st := &rp.st
	if rec.Shard < 0 || rec.Shard >= NumShards {
		return errors.New("shard out of range")
	}
	switch rec.T {
	case recHeader:
		st.tracked = rec.V >= spoolTracked
	case recSnapshot:
		rp.complete = true
	case recCarry:
		if rec.Agg == nil {
			return errors.New("carry without aggregate")
		}
		st.carried[rec.Shard].merge(rec.Agg)
	case recCall:
		if rec.Call == nil {
			return errors.New("call record without call")
		}
		st.carried[shardOf(rec.Call.ConsumerID)].addSpooled(*rec.Call)
	case recFlush:
		if rec.Agg == nil || rec.ID == "" {
			return errors.New("flush without id or aggregate")
		}
		// The intent holds every call of its shard logged before it.
		st.carried[rec.Shard] = newAggregate()
		if _, dup := rp.byID[rec.ID]; !dup {
			fl := &flush{id: rec.ID, shard: rec.Shard, agg: rec.Agg}
			rp.byID[rec.ID] = fl
			rp.order = append(rp.order, fl)
			rp.state[rec.ID] = flushUnacked
		}
	case recAck:
		fl, ok := rp.byID[rec.ID]
		if !ok || rp.state[rec.ID] == flushSettled {
			break
		}
		if !st.tracked {
			rp.state[rec.ID] = flushSettled
			break
		}
		rp.state[rec.ID] = flushAcked
		if rec.At != 0 {
			fl.ackedAt = time.UnixMilli(rec.At)
		}
	case recConfirm:
		for _, id := range rec.IDs {
			if _, ok := rp.byID[id]; ok {
				rp.state[id] = flushSettled
			}
		}
	default:
		return fmt.Errorf("unknown record type %q", rec.T)
	}
	return nil
}

// syncDir makes a directory's entries (created, removed files) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// ErrSpoolInUse means another live process holds the spool directory.
var ErrSpoolInUse = errors.New("another process is using this spool")

// lockDir takes an exclusive advisory lock on dir, so two meters never share
// a spool. The lock goes away with the process, even on kill -9.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open spool lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("lock spool %s: %w", dir, ErrSpoolInUse)
		}
		return nil, fmt.Errorf("lock spool %s: %w", dir, err)
	}
	return f, nil
}

// spool is a Meter's log on disk: a locked directory whose live segment
// holds a snapshot and then every call, flush intent, ack and confirmation,
// plus the call lines waiting to be written to it (group commit), its
// sequence numbers, rotation and replay. It has no lock of its own: the Meter
// guards its fields with Meter.mu and orders its writes with Meter.wmu,
// because a call's line and its place in the in-memory sums must change
// together (an intent counts exactly the calls of its shard logged before
// it).
type spool struct {
	dir     string
	tracked bool // segments carry the spoolTracked header (MeterConfig.Confirmed)
	log     *slog.Logger
	lock    *os.File
	file    *os.File // nil until the first rotation
	seq     int64    // sequence number of the live segment
	// size is the live segment's length, base the length of its snapshot.
	size, base int64
	// pend holds encoded call lines not yet written; pendSeq numbers the
	// calls appended to it and doneSeq the last one written (or covered by
	// a rotation's snapshot). spare is the other buffer of the pair.
	pend, spare      []byte
	pendSeq, doneSeq uint64
}

// spoolSnapshot is the state a new segment starts with.
type spoolSnapshot struct {
	// acked were acknowledged by Redis and await the database; they are
	// written as an intent and an ack each.
	acked []*flush
	// unacked are not yet acknowledged by Redis.
	unacked []*flush
	// carried are the calls of each shard not yet in any flush.
	carried *[NumShards]*aggregate
}

// openSpool creates and locks dir and replays its newest complete segment
// (found is false when there is none). Nothing is written until the first
// rotate, which starts the live segment.
func openSpool(dir string, tracked bool, log *slog.Logger) (s *spool, st spoolState, found bool, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, st, false, fmt.Errorf("create spool dir: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, st, false, err
	}
	s = &spool{dir: dir, tracked: tracked, log: log, lock: lock}
	st, found, err = s.replay()
	if err != nil {
		lock.Close()
		return nil, st, false, err
	}
	return s, st, found, nil
}

// replay reads the newest complete segment and notes the newest sequence
// number, so the next segment comes after every one on disk.
func (s *spool) replay() (st spoolState, found bool, err error) {
	seqs, err := listSegments(s.dir)
	if err != nil {
		return st, false, err
	}
	for i := len(seqs) - 1; i >= 0 && !found; i-- {
		path := filepath.Join(s.dir, segmentName(seqs[i]))
		seg, complete, bad, err := replaySegment(path)
		if err != nil {
			return st, false, err
		}
		if !complete {
			s.log.Warn("metering spool: ignoring segment cut short while being created", "segment", path)
			continue
		}
		if bad > 0 {
			s.log.Warn("metering spool: skipped unreadable lines (torn by an OS crash?)", "segment", path, "lines", bad)
		}
		st, found = seg, true
	}
	if len(seqs) > 0 {
		s.seq = seqs[len(seqs)-1]
	}
	return st, found, nil
}

// rotate starts a new segment holding snap, syncs it, then removes every
// older segment. Until the new one is complete and synced the old one stays
// the truth, so a crash at any point loses and doubles nothing. Call lines
// still waiting are dropped: snap.carried counts them.
func (s *spool) rotate(snap spoolSnapshot) error {
	seq := s.seq + 1
	path := filepath.Join(s.dir, segmentName(seq))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("create spool segment: %w", err)
	}
	var buf []byte
	add := func(r spoolRecord) error {
		b, err := encodeRecord(r)
		buf = append(buf, b...)
		return err
	}
	hdr := spoolRecord{T: recHeader}
	if s.tracked {
		hdr.V = spoolTracked
	}
	err = add(hdr)
	// Intents first: an intent resets its shard's carried calls on replay,
	// and these carried calls are not in it.
	for _, fl := range snap.acked {
		err = errors.Join(err, add(spoolRecord{T: recFlush, ID: fl.id, Shard: fl.shard, Agg: fl.agg}),
			add(spoolRecord{T: recAck, ID: fl.id, At: fl.ackedAt.UnixMilli()}))
	}
	for _, fl := range snap.unacked {
		err = errors.Join(err, add(spoolRecord{T: recFlush, ID: fl.id, Shard: fl.shard, Agg: fl.agg}))
	}
	if snap.carried != nil {
		for i, a := range snap.carried {
			if !a.empty() {
				err = errors.Join(err, add(spoolRecord{T: recCarry, Shard: i, Agg: a}))
			}
		}
	}
	err = errors.Join(err, add(spoolRecord{T: recSnapshot}))
	if err == nil {
		_, err = f.Write(buf)
	}
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = syncDir(s.dir)
	}
	if err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write spool segment %s: %w", path, err)
	}
	if s.file != nil {
		s.file.Close()
	}
	s.file, s.seq, s.size, s.base = f, seq, int64(len(buf)), int64(len(buf))
	s.pend, s.doneSeq = s.pend[:0], s.pendSeq
	seqs, err := listSegments(s.dir)
	if err != nil {
		return err
	}
	for _, old := range seqs {
		if old != seq {
			if err := os.Remove(filepath.Join(s.dir, segmentName(old))); err != nil {
				s.log.Warn("metering spool: remove old segment", "err", err)
			}
		}
	}
	return nil
}

// append writes b to the live segment.
func (s *spool) append(b []byte) error {
	n, err := s.file.Write(b)
	s.size += int64(n)
	return err
}

// appendRecord writes one record to the live segment.
func (s *spool) appendRecord(r spoolRecord) error {
	line, err := encodeRecord(r)
	if err != nil {
		return err
	}
	return s.append(line)
}

// note appends a record that only settles flushes; a failure is logged
// (losing it means at most a no-op resend). Before the first rotation it is
// dropped: the snapshot written next holds the state.
func (s *spool) note(r spoolRecord) {
	if s.file == nil {
		return
	}
	if err := s.appendRecord(r); err != nil {
		s.log.Warn("metering: append to spool", "record", r.T, "err", err)
	}
}

// queue adds one call line to those waiting and returns its number.
func (s *spool) queue(line []byte) uint64 {
	s.pend = append(s.pend, line...)
	s.pendSeq++
	return s.pendSeq
}

// written reports whether call line number seq is written (or covered by a
// snapshot).
func (s *spool) written(seq uint64) bool { return s.doneSeq >= seq }

// takeQueued hands over the waiting call lines for one write outside the
// lock (group commit), swapping in the spare buffer; give them back with
// wroteQueued.
func (s *spool) takeQueued() (buf []byte, upto uint64, file *os.File) {
	buf, upto, file = s.pend, s.pendSeq, s.file
	s.pend, s.spare = s.spare[:0], nil
	return buf, upto, file
}

// wroteQueued records that n bytes of buf, the lines up to upto, were
// written; buf becomes the spare buffer.
func (s *spool) wroteQueued(buf []byte, upto uint64, n int) {
	s.size += int64(n)
	s.doneSeq = upto
	s.spare = buf
}

// writeQueued writes the call lines still waiting, so that what follows (a
// flush intent) comes after them.
func (s *spool) writeQueued() error {
	if len(s.pend) == 0 {
		s.doneSeq = s.pendSeq
		return nil
	}
	err := s.append(s.pend)
	s.pend, s.doneSeq = s.pend[:0], s.pendSeq
	if err != nil {
		return fmt.Errorf("append calls to spool: %w", err)
	}
	return nil
}

// grown is how much the live segment grew past its snapshot.
func (s *spool) grown() int64 { return s.size - s.base }

// close closes the live segment and releases the directory lock.
func (s *spool) close() error {
	var err error
	if s.file != nil {
		err = s.file.Close()
	}
	return errors.Join(err, s.lock.Close())
}
