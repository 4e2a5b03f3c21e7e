//go:build !linux

package localshell

import (
	"context"
	"log/slog"

	gossh "golang.org/x/crypto/ssh"
)

// Server runs in-process SSH servers for local targets; on this system
// every Connect fails with ErrUnsupported.
type Server struct{}

// New returns a Server.
func New(logger *slog.Logger) *Server { return &Server{} }

// Connect fails with ErrUnsupported: local targets need Linux.
func (s *Server) Connect(ctx context.Context, t Target, login string) (*gossh.Client, error) {
	return nil, ErrUnsupported
}

// Close does nothing.
func (s *Server) Close() error { return nil }
