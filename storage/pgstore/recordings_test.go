package pgstore

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/jumpgate/jumpgate/storage"
)

func TestRecordingChunks(t *testing.T) {
	_, _, stores := replicas(t, 2)
	a, b := stores[0], stores[1]
	ctx := ctxT(t)
	data := func(i int) []byte { return []byte(fmt.Sprintf(`[%d.5, "o", "chunk %d\r\n"]`+"\n\x00\xff", i, i)) }
	// Written out of order and from two replicas.
	for _, i := range []int{2, 0, 3, 1, 10} {
		s := a
		if i%2 == 1 {
			s = b
		}
		if err := s.AppendChunk(ctx, "sess-1", i, data(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.AppendChunk(ctx, "sess-2", 0, []byte("other")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		session string
		from    int
		want    []int
	}{
		{"all in order", "sess-1", 0, []int{0, 1, 2, 3, 10}},
		{"from the middle", "sess-1", 3, []int{3, 10}},
		{"negative from", "sess-1", -5, []int{0, 1, 2, 3, 10}},
		{"past the end", "sess-1", 11, nil},
		{"unknown session", "nope", 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs, err := b.Chunks(ctx, tc.session, tc.from)
			if err != nil {
				t.Fatal(err)
			}
			if len(cs) != len(tc.want) {
				t.Fatalf("%d chunks, want %d", len(cs), len(tc.want))
			}
			for i, c := range cs {
				if c.Seq != tc.want[i] || c.Session != tc.session || !bytes.Equal(c.Data, data(c.Seq)) {
					t.Fatalf("chunk %d = %d %q %q", i, c.Seq, c.Session, c.Data)
				}
			}
		})
	}
	// A retried write of the same bytes is fine; other bytes are a conflict.
	if err := b.AppendChunk(ctx, "sess-1", 2, data(2)); err != nil {
		t.Fatalf("retry = %v", err)
	}
	if err := b.AppendChunk(ctx, "sess-1", 2, []byte("different")); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("overwrite = %v, want ErrConflict", err)
	}
	if err := a.AppendChunk(ctx, "sess-1", -1, nil); err == nil {
		t.Fatal("negative seq accepted")
	}
	if err := a.AppendChunk(ctx, "sess-3", 0, nil); err != nil {
		t.Fatalf("empty chunk = %v", err)
	}
	if cs, err := a.Chunks(ctx, "sess-3", 0); err != nil || len(cs) != 1 || len(cs[0].Data) != 0 {
		t.Fatalf("empty chunk round trip = %v %v", cs, err)
	}
}
