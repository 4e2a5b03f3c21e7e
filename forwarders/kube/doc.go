// Package kube is the Kubernetes forwarder: it serves one SSH direct-tcpip
// channel as an HTTPS endpoint (TLS with a certificate from jumpgate's own
// X.509 CA, HTTP/1.1 and HTTP/2), classifies every API request the way
// kube-apiserver does, applies the kubernetes block/review/mask policy,
// masks protected fields in responses, audits each request, and forwards it
// to the API server with the target's credentials while impersonating the
// SSH user and their groups. A request's kube.request event is committed by
// its connection's audit writers after the response goes out (refusals are
// audited before they are answered, upgrades as they end, after the exec
// session's own events); every event is committed before the channel is
// released, and a failed write closes the connection (later requests on it
// get 503). Upgrades (exec, attach, port-forward) are relayed with
// half-close after the 101; pod execs over WebSocket (channel.k8s.io
// protocols) and SPDY/3.1 are recorded as signed asciicast sessions (a SPDY
// exec whose frames cannot be followed is closed, not passed unrecorded). It
// also renders the kubeconfig that trusts its CA. It is not a Kubernetes
// client, an admission controller or an authorizer: the cluster's own RBAC
// still decides what the impersonated user may do.
package kube
