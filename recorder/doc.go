// Package recorder writes, reads, seeks, replays, exports and signs terminal
// session recordings in the asciicast v2 format. A Writer records output,
// input and resize events as a session runs, with bounded buffering and
// periodic fsync so that a crash leaves a playable prefix, an incremental
// SHA-256 of the file and a sidecar seek index; a Reader parses recordings
// (tolerating a crash-truncated last line) and seeks by time; Play and Export
// replay or re-emit them; Sign and Verify bind a recording's hash to its
// session with an ed25519 signature. It is shared by the SSH bastion and the
// Kubernetes exec recorder, so it knows nothing about SSH, Kubernetes, session
// metadata storage or the audit log: callers feed it bytes and persist the
// Summary and signature wherever they keep them. A Writer writes to a file
// (Create) or to any Sink (NewWriter), and a Reader reads a file (Open) or
// any io.ReaderAt (NewReader); package recordings picks where they live.
package recorder
