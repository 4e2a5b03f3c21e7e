package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/jumpgate/jumpgate/config"
	"github.com/jumpgate/jumpgate/login"
	"github.com/jumpgate/jumpgate/server"
)

// Client calls the API.
type Client interface {
	// Do sends body (nil, []byte or a JSON value) and decodes the answer
	// into out (nil, *[]byte, io.Writer or a JSON value).
	Do(ctx context.Context, method, path string, body, out any) error
	Close() error
}

// Options say how to connect.
type Options struct {
	Server, SSHDir, CAFile string
	// ConfigFile selects local mode.
	ConfigFile string
	Logger     *slog.Logger
}

// Open connects per opts.
func Open(opts Options) (Client, error) {
	if opts.ConfigFile != "" {
		return openLocal(opts)
	}
	c, err := login.NewAPIClient(opts.SSHDir, opts.Server, opts.CAFile)
	if err != nil {
		return nil, err
	}
	return remote{c}, nil
}

type remote struct{ *login.APIClient }

func (remote) Close() error { return nil }

// local speaks HTTP to a handler: the admin socket of a running server, or
// an in-process API over the server's store.
type local struct {
	hc    *http.Client
	h     http.Handler
	close func() error
}

func openLocal(opts Options) (Client, error) {
	cfg, err := config.Load(opts.ConfigFile)
	if err != nil {
		return nil, err
	}
	sock := server.AdminSocketPath(cfg.DataDir)
	if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
		c.Close()
		tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}}
		return &local{hc: &http.Client{Transport: tr}, close: func() error { tr.CloseIdleConnections(); return nil }}, nil
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	core, err := server.OpenCore(context.Background(), cfg, logger)
	if err != nil {
		return nil, err
	}
	api := core.API(nil)
	api.Auth = server.LocalAuth
	return &local{h: api.Handler(), close: core.Close}, nil
}

func (l *local) Close() error { return l.close() }

func (l *local) Do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://local"+path, rd)
	if err != nil {
		return err
	}
	if req.Body == nil {
		req.Body = http.NoBody // as a server hands it to handlers
	}
	var resp *http.Response
	if l.h != nil {
		rec := httptest.NewRecorder()
		l.h.ServeHTTP(rec, req)
		resp = rec.Result()
	} else {
		if resp, err = l.hc.Do(req); err != nil {
			return fmt.Errorf("apiclient: admin socket: %w", err)
		}
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(b))
		}
		return &login.APIError{Status: resp.StatusCode, Message: e.Error}
	}
	switch o := out.(type) {
	case nil:
		return nil
	case *[]byte:
		*o, err = io.ReadAll(resp.Body)
		return err
	case io.Writer:
		_, err = io.Copy(o, resp.Body)
		return err
	default:
		return json.NewDecoder(resp.Body).Decode(out)
	}
}

// IsStatus reports whether err is an API error with the given status.
func IsStatus(err error, status int) bool {
	var ae *login.APIError
	return errors.As(err, &ae) && ae.Status == status
}
