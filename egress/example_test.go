package egress_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/sluice-gateway/sluice/egress"
)

// A public upstream's client, and the audit evidence of where a request
// went. (Not run: it would reach the Internet.)
func ExampleTracePeer() {
	p := egress.DefaultPolicy()
	p.PublicHosts = []string{"api.openai.com"}
	client, err := egress.NewClient(p, egress.Upstream{Name: "openai", Class: egress.EgressPublic}, egress.TransportOptions{})
	if err != nil {
		panic(err)
	}
	ctx, peer := egress.TracePeer(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", "https://api.openai.com/v1/chat/completions", nil)
	resp, err := client.Do(req)
	if de := (*egress.DeniedError)(nil); errors.As(err, &de) {
		slog.Warn("egress refused", "upstream", de.Upstream, "host", de.Host, "addr", de.Addr, "reason", de.Reason)
		return
	}
	if err != nil {
		return
	}
	defer resp.Body.Close()
	if addr, reused, ok := peer.Addr(); ok {
		slog.Info("upstream request", "peer", addr, "reused_conn", reused)
	}
}
