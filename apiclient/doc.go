// Package apiclient connects jumpgate's command line to a server's API:
// remotely over HTTPS with requests signed by the certificate of the last
// `jumpgate login`, or locally (`--config FILE`) through the running
// server's admin socket, or in-process against the server's data when no
// server runs. Every command then speaks the same JSON API whichever way it
// is connected. It does not define the commands: cmd/jumpgate does.
package apiclient
