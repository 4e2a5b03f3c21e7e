package login

import (
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// StatusInfo describes the identity of the last login.
type StatusInfo struct {
	KeyID       string
	Username    string // KeyID before the first '/'
	Principals  []string
	Serial      uint64
	ValidAfter  time.Time
	ValidBefore time.Time
	TimeLeft    time.Duration // zero once expired
	Expired     bool
	Server      string
	CertFile    string
	Extensions  []string
}

// Status reads the certificate under sshDir and reports it as of now.
// ErrNotLoggedIn means there is no certificate.
func Status(sshDir string, now time.Time) (StatusInfo, error) {
	var si StatusInfo
	path := filepath.Join(sshDir, CertFile)
	cert, err := readCert(path)
	if err != nil {
		return si, err
	}
	saved, err := readSaved(sshDir)
	if err != nil {
		return si, err
	}
	si = StatusInfo{
		KeyID:      cert.KeyId,
		Principals: append([]string(nil), cert.ValidPrincipals...),
		Serial:     cert.Serial,
		ValidAfter: time.Unix(int64(cert.ValidAfter), 0).UTC(),
		Server:     saved.Server,
		CertFile:   path,
	}
	si.Username = keyIDUser(cert.KeyId)
	for ext := range cert.Extensions {
		si.Extensions = append(si.Extensions, ext)
	}
	slices.Sort(si.Extensions)
	if cert.ValidBefore == ssh.CertTimeInfinity {
		si.ValidBefore = time.Time{}
		si.TimeLeft = time.Duration(1<<63 - 1)
		return si, nil
	}
	si.ValidBefore = time.Unix(int64(cert.ValidBefore), 0).UTC()
	si.TimeLeft = si.ValidBefore.Sub(now)
	if si.TimeLeft <= 0 {
		si.TimeLeft = 0
		si.Expired = true
	}
	return si, nil
}

// WriteStatus prints si for people.
func WriteStatus(w io.Writer, si StatusInfo) error {
	state := "valid, " + si.TimeLeft.Truncate(time.Second).String() + " left"
	if si.Expired {
		state = "EXPIRED: run `jumpgate login`"
	}
	_, err := fmt.Fprintf(w, "user:        %s\nkey id:      %s\nserial:      %d\nprincipals:  %s\nvalid until: %s (%s)\nserver:      %s\ncertificate: %s\n",
		si.Username, si.KeyID, si.Serial, strings.Join(si.Principals, ", "),
		si.ValidBefore.Format(time.RFC3339), state, si.Server, si.CertFile)
	return err
}

// keyIDUser returns the username of a key id "<username>/<serial>"; a
// machine identity's username may itself contain '/'.
func keyIDUser(keyID string) string {
	if i := strings.LastIndex(keyID, "/"); i >= 0 {
		return keyID[:i]
	}
	return keyID
}
