// Package egress decides where Sluice may connect and makes the
// connections: it classifies IP addresses, holds the egress policy for
// private and public upstreams, and provides the single HTTP transport
// every upstream request goes through.
//
// The transport checks the address that is actually dialed, not the one a
// DNS lookup returned earlier, ignores proxy environment variables and
// never follows redirects: the three ways earlier gateways let traffic
// slip past their checks.
//
//	p := egress.DefaultPolicy()
//	p.PublicHosts = []string{"api.openai.com"}
//	client, err := egress.NewClient(p, egress.Upstream{Name: "openai", Class: egress.EgressPublic}, egress.TransportOptions{})
//	...
//	ctx, peer := egress.TracePeer(ctx)
//	resp, err := client.Do(req.WithContext(ctx)) // errors.As(err, new(*egress.DeniedError)) on refusal
//	addr, _, _ := peer.Addr()                    // evidence for the audit record
package egress
