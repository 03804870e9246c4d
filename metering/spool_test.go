package metering

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// spoolCalls sums n calls of consumer into an aggregate.
func spoolCalls(consumer string, n int) *aggregate {
	a := newAggregate()
	for i := range n {
		c := genCall(i)
		c.ConsumerID = consumer
		a.addSpooled(spooledOf(c))
	}
	return a
}

func openTestSpool(t *testing.T, dir string) (*spool, spoolState, bool) {
	t.Helper()
	s, st, found, err := openSpool(dir, true, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	return s, st, found
}

func segmentsIn(t *testing.T, dir string) []int64 {
	t.Helper()
	seqs, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	return seqs
}

// TestSpoolReplaysWhatWasLogged writes a snapshot and records after it, then
// checks a reopened spool replays them: an ack in a tracked segment leaves
// its flush awaiting the database, a confirm settles it, calls after the
// snapshot are carried.
func TestSpoolReplaysWhatWasLogged(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, _, found := openTestSpool(t, dir)
	if found {
		t.Fatal("an empty directory replayed a segment")
	}
	acked := &flush{id: "a1", shard: shardOf("con_a"), agg: spoolCalls("con_a", 3), ackedAt: testStart}
	unacked := &flush{id: "u1", shard: shardOf("con_b"), agg: spoolCalls("con_b", 4)}
	var carried [NumShards]*aggregate
	for i := range carried {
		carried[i] = newAggregate()
	}
	carried[shardOf("con_c")] = spoolCalls("con_c", 2)
	if err := s.rotate(spoolSnapshot{acked: []*flush{acked}, unacked: []*flush{unacked}, carried: &carried}); err != nil {
		t.Fatal(err)
	}
	c := genCall(1)
	c.ConsumerID = "con_d"
	seq := s.queue(spooledOf(c).appendSpoolLine(nil))
	if s.written(seq) {
		t.Fatal("a queued line counts as written")
	}
	if err := s.writeQueued(); err != nil || !s.written(seq) {
		t.Fatalf("write queued lines: %v, written %v", err, s.written(seq))
	}
	at := testStart.Add(time.Minute)
	if err := s.appendRecord(spoolRecord{T: recAck, ID: "u1", At: at.UnixMilli()}); err != nil {
		t.Fatal(err)
	}
	s.note(spoolRecord{T: recConfirm, IDs: []string{"a1"}})
	if s.grown() <= 0 {
		t.Fatalf("the segment did not grow past its snapshot: %d", s.grown())
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}

	s2, st, found := openTestSpool(t, dir)
	defer s2.close()
	if !found || !st.tracked {
		t.Fatalf("found %v, tracked %v; want both", found, st.tracked)
	}
	if len(st.unacked) != 0 || len(st.acked) != 1 || st.acked[0].id != "u1" || !st.acked[0].ackedAt.Equal(at) || st.acked[0].agg.n != 4 {
		t.Fatalf("replayed unacked %d, acked %+v; want u1 alone, acknowledged at %v, 4 calls", len(st.unacked), st.acked, at)
	}
	for consumer, want := range map[string]int64{"con_c": 2, "con_d": 1} {
		if got := st.carried[shardOf(consumer)].n; got != want {
			t.Errorf("carried calls of %s's shard = %d, want %d", consumer, got, want)
		}
	}
	if s2.seq != 1 {
		t.Fatalf("replayed sequence number %d, want 1", s2.seq)
	}
	if err := s2.rotate(spoolSnapshot{}); err != nil {
		t.Fatal(err)
	}
	if got := segmentsIn(t, dir); len(got) != 1 || got[0] != 2 {
		t.Fatalf("segments after rotation: %v, want [2]", got)
	}
}

// TestSpoolCrashMidRotation: a newer segment without its snapshot marker (a
// rotation cut short) is ignored, a torn last line is skipped, and the next
// segment is numbered past both.
func TestSpoolCrashMidRotation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, _, _ := openTestSpool(t, dir)
	u := &flush{id: "u1", shard: shardOf("con_a"), agg: spoolCalls("con_a", 5)}
	if err := s.rotate(spoolSnapshot{unacked: []*flush{u}}); err != nil {
		t.Fatal(err)
	}
	if err := s.append([]byte(`{"t":"a","id":"u1"`)); err != nil { // torn: no newline
		t.Fatal(err)
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	cut := `{"t":"h","v":2}` + "\n" + `{"t":"f","id":"u1","shard":0,"agg":{"n":0}}` + "\n"
	if err := os.WriteFile(filepath.Join(dir, segmentName(2)), []byte(cut), 0o600); err != nil {
		t.Fatal(err)
	}

	s2, st, found := openTestSpool(t, dir)
	defer s2.close()
	if !found || len(st.unacked) != 1 || st.unacked[0].id != "u1" || st.unacked[0].agg.n != 5 || len(st.acked) != 0 {
		t.Fatalf("replayed found=%v unacked=%v acked=%v; want u1 unacknowledged with 5 calls", found, st.unacked, st.acked)
	}
	if err := s2.rotate(spoolSnapshot{unacked: st.unacked}); err != nil {
		t.Fatal(err)
	}
	if got := segmentsIn(t, dir); len(got) != 1 || got[0] != 3 {
		t.Fatalf("segments after rotation: %v, want [3]", got)
	}
}

func TestSpoolLocked(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, _, _ := openTestSpool(t, dir)
	if _, _, _, err := openSpool(dir, true, quietLogger()); err == nil {
		t.Fatal("a second spool opened a locked directory")
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	s2, _, _ := openTestSpool(t, dir)
	s2.close()
}
