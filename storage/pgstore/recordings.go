package pgstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/jumpgate/jumpgate/recordings"
	"github.com/jumpgate/jumpgate/storage"
)

// Chunk is one stored piece of a session recording.
type Chunk struct {
	Session string
	Seq     int
	Data    []byte
}

// RecordingStore keeps session recordings as ordered chunks, so every
// replica can replay a recording another replica wrote.
type RecordingStore interface {
	// AppendChunk stores chunk seq (>= 0) of session. Storing the same bytes
	// again under the same seq succeeds (a retried write); different bytes
	// are a storage.ErrConflict.
	AppendChunk(ctx context.Context, session string, seq int, data []byte) error
	// Chunks returns the chunks of session with Seq >= fromSeq, in order.
	Chunks(ctx context.Context, session string, fromSeq int) ([]Chunk, error)
}

var _ RecordingStore = (*Store)(nil)

// maxChunkSeq is the largest seq the integer column holds.
const maxChunkSeq = 1<<31 - 1

// AppendChunk stores one recording chunk.
func (s *Store) AppendChunk(ctx context.Context, session string, seq int, data []byte) error {
	if seq < 0 || seq > maxChunkSeq {
		return fmt.Errorf("pgstore: recording %s: chunk %d out of range", session, seq)
	}
	if data == nil {
		data = []byte{}
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, "INSERT INTO recording_chunks (session, seq, data) VALUES ($1, $2, $3) ON CONFLICT (session, seq) DO NOTHING", session, seq, data)
		if err != nil || tag.RowsAffected() == 1 {
			return err
		}
		var cur []byte
		if err := tx.QueryRow(ctx, "SELECT data FROM recording_chunks WHERE session = $1 AND seq = $2", session, seq).Scan(&cur); err != nil {
			return err
		}
		if !bytes.Equal(cur, data) {
			return storage.ErrConflict
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("pgstore: recording %s chunk %d: %w", session, seq, err)
	}
	return nil
}

// Chunks returns the chunks of session from fromSeq on, in order. A session
// without chunks yields none and no error.
func (s *Store) Chunks(ctx context.Context, session string, fromSeq int) ([]Chunk, error) {
	if fromSeq > maxChunkSeq {
		return nil, nil
	}
	fromSeq = max(fromSeq, 0)
	rows, _ := s.pool.Query(ctx, "SELECT seq, data FROM recording_chunks WHERE session = $1 AND seq >= $2 ORDER BY seq", session, fromSeq)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Chunk, error) {
		c := Chunk{Session: session}
		var seq int32
		err := row.Scan(&seq, &c.Data)
		c.Seq = int(seq)
		return c, err
	})
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("pgstore: recording %s: %w", session, err)
	}
	return out, nil
}

var _ recordings.ChunkStore = (*Store)(nil)

// ChunkSizes returns the size of every chunk of a recording, in order,
// without reading the data (octet_length reads a TOAST pointer's size).
func (s *Store) ChunkSizes(ctx context.Context, name string) ([]recordings.ChunkSize, error) {
	rows, _ := s.pool.Query(ctx, "SELECT seq, octet_length(data) FROM recording_chunks WHERE session = $1 ORDER BY seq", name)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (recordings.ChunkSize, error) {
		var seq int32
		var size int64
		err := row.Scan(&seq, &size)
		return recordings.ChunkSize{Seq: int(seq), Size: size}, err
	})
	if err != nil {
		return nil, fmt.Errorf("pgstore: recording %s: %w", name, err)
	}
	return out, nil
}

// ReadChunks returns the chunks with from <= seq < to, in order.
func (s *Store) ReadChunks(ctx context.Context, name string, from, to int) ([]recordings.Chunk, error) {
	from, to = max(from, 0), min(to, maxChunkSeq+1)
	if from >= to {
		return nil, nil
	}
	rows, _ := s.pool.Query(ctx, "SELECT seq, data FROM recording_chunks WHERE session = $1 AND seq >= $2 AND seq < $3 ORDER BY seq", name, from, to)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (recordings.Chunk, error) {
		var c recordings.Chunk
		var seq int32
		err := row.Scan(&seq, &c.Data)
		c.Seq = int(seq)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("pgstore: recording %s: %w", name, err)
	}
	return out, nil
}

// DeleteChunks removes every chunk of a recording.
func (s *Store) DeleteChunks(ctx context.Context, name string) error {
	if _, err := s.pool.Exec(ctx, "DELETE FROM recording_chunks WHERE session = $1", name); err != nil {
		return fmt.Errorf("pgstore: recording %s: delete: %w", name, err)
	}
	return nil
}
