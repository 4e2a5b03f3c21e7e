package devidp_test

import (
	"log"
	"net/http"

	"github.com/jumpgate/jumpgate/devidp"
)

// The way `jumpgate dev` mounts the provider next to its own routes: the
// handler is registered at the issuer's path and strips it itself.
func ExampleProvider_Handler() {
	idp, err := devidp.New(devidp.Config{
		Issuer: "https://127.0.0.1:8443/dev-idp",
		Users:  devidp.DemoUsers(),
		Clients: []devidp.Client{{
			ID: "jumpgate",
			// CLI loopback callback (any port) and the web console.
			RedirectURIs: []string{"http://127.0.0.1/callback", "https://127.0.0.1:8443/auth/callback"},
		}},
		SigningKeyFile: ".jumpgate-dev/idp-signing-key.pem",
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/dev-idp/", idp.Handler())
	// ... mux.Handle("/", console); serve mux with TLS on 127.0.0.1:8443.
	_ = mux
}
