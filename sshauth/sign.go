package sshauth

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"golang.org/x/crypto/ssh"
)

// signatureAlgorithms lists, per underlying key type, the signature formats
// the verifier accepts, in the client's order of preference. SHA-1 RSA
// ("ssh-rsa" signatures) and security-key types are not accepted.
var signatureAlgorithms = map[string][]string{
	ssh.KeyAlgoED25519:  {ssh.KeyAlgoED25519},
	ssh.KeyAlgoECDSA256: {ssh.KeyAlgoECDSA256},
	ssh.KeyAlgoECDSA384: {ssh.KeyAlgoECDSA384},
	ssh.KeyAlgoECDSA521: {ssh.KeyAlgoECDSA521},
	ssh.KeyAlgoRSA:      {ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSASHA512},
}

// SignRequest adds the Authorization and X-Jumpgate-Signature headers to req.
// signer must be a certificate signer (ssh.NewCertSigner) whose public key is
// a user certificate; body must be exactly the bytes req will send (nil for
// none). now and rand are the clock and the nonce source (crypto/rand.Reader
// in production).
func SignRequest(req *http.Request, body []byte, signer ssh.Signer, now time.Time, rand io.Reader) error {
	if req == nil || req.URL == nil {
		return errors.New("sshauth: sign: request has no URL")
	}
	if signer == nil {
		return errors.New("sshauth: sign: no signer")
	}
	cert, ok := signer.PublicKey().(*ssh.Certificate)
	if !ok {
		return errors.New("sshauth: sign: signer is not a certificate signer (use ssh.NewCertSigner)")
	}
	if cert.CertType != ssh.UserCert {
		return errors.New("sshauth: sign: certificate is not a user certificate")
	}
	algos, ok := signatureAlgorithms[cert.Key.Type()]
	if !ok {
		return fmt.Errorf("sshauth: sign: key type %s is not supported", cert.Key.Type())
	}
	nb := make([]byte, nonceBytes)
	if _, err := io.ReadFull(rand, nb); err != nil {
		return fmt.Errorf("sshauth: sign: nonce: %w", err)
	}
	p := sigParams{Time: now.Unix(), Nonce: hex.EncodeToString(nb)}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	data := canonicalString(requestMethod(req.Method), host, req.URL.RequestURI(), p.Time, p.Nonce, body)

	var sig *ssh.Signature
	var err error
	if as, ok := signer.(ssh.AlgorithmSigner); ok {
		sig, err = as.SignWithAlgorithm(rand, data, algos[0])
	} else {
		sig, err = signer.Sign(rand, data)
	}
	if err != nil {
		return fmt.Errorf("sshauth: sign: %w", err)
	}
	p.Sig = ssh.Marshal(sig)
	req.Header.Set("Authorization", AuthScheme+" "+base64.StdEncoding.EncodeToString(cert.Marshal()))
	req.Header.Set(SignatureHeader, p.String())
	return nil
}

// requestMethod is the method net/http sends: "" means GET.
func requestMethod(m string) string {
	if m == "" {
		return http.MethodGet
	}
	return m
}
