// Package recordings decides where session recordings live and hands the
// recorder a place to write them and the readers a way back: files under a
// recordings directory (one server on bbolt), or ordered chunks in the shared
// database (several replicas on PostgreSQL), so any replica can replay, export
// or hash a recording another replica wrote, while it runs and after. It is
// not the asciicast format (package recorder) nor the session index (package
// storage).
package recordings
