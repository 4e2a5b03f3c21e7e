// Package ca is jumpgate's SSH certificate authority: it loads or creates
// the user and host CA keys, checks the public keys it is asked to certify,
// signs user certificates (for people and for the bastion's own upstream
// connections) and host certificates as a pipeline of options, modifiers and
// validators, keeps the revocation set and renders it as an OpenSSH KRL. It
// does not authenticate anyone: callers pass an already verified identity
// and the principals policy grants.
package ca
