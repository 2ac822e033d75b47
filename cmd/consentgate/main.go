// Command consentgate is Caddy with its standard modules and ConsentGate's.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// Caddy's standard modules.
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	// ConsentGate's modules.
	_ "github.com/consentgate/consentgate/module"
)

func main() {
	caddycmd.Main()
}
