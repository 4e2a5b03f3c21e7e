// Package web is jumpgate's browser console for auditors, approvers and
// engineers: an OIDC (authorization code + PKCE) login with a server-side
// session, server-rendered pages listing sessions, audit events and access
// requests, and in-browser replay of recordings with the embedded
// asciinema-player, which draws recorded output into a terminal grid as text.
// Each page applies the same visibility rules as the JSON API (package
// httpapi): auditors see every session and the whole audit log, approvers
// see and decide requests, everybody else sees their own. It is not the JSON
// API, not an identity provider and keeps no durable state of its own: its
// login sessions live in memory and end with the process.
package web
