// Package server assembles a jumpgate server from its parts: it opens
// storage, loads keys, policy and identity verification, and runs the HTTPS
// API, the admin socket and the bastion under one context with an orderly
// shutdown. It is wiring only; each behaviour lives in its own package.
package server
