package server

import (
	"context"
	"log/slog"
	"net"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/config"
	"github.com/sluice-gateway/sluice/proxy"
)

// network is the server's network policy: the listeners it accepts on,
// the transports its upstream calls leave through, the data-class router
// and the audit trail.
type network struct {
	cfg *config.Config
}

func newNetwork(_ context.Context, cfg *config.Config, _ sluice.Store, _ *slog.Logger, _ prometheus.Registerer) (*network, error) {
	return &network{cfg: cfg}, nil
}

// listeners opens the configured listeners.
func (n *network) listeners() ([]net.Listener, error) {
	ln, err := net.Listen("tcp", n.cfg.Listen)
	if err != nil {
		return nil, err
	}
	return []net.Listener{ln}, nil
}

// transport returns the transport for calls to upstream u.
func (n *network) transport(config.Upstream) (http.RoundTripper, error) { return plainTransport(), nil }

// connContext stores a connection's facts in its requests' context.
func (n *network) connContext(ctx context.Context, _ net.Conn) context.Context { return ctx }

// clientAddr is the client address recorded for a request.
func (n *network) clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// traceDial reports whether calls record the upstream address dialed.
func (n *network) traceDial() bool { return false }

// admitters are the network's admission steps (data-class routing).
func (n *network) admitters() []proxy.Admitter { return nil }
