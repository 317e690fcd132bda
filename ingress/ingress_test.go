package ingress

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	allow := prefixes("10.0.0.0/8")
	tests := []struct {
		name    string
		cfg     ListenerConfig
		wantErr string // substring; empty means valid
		public  bool   // the error wraps ErrPublicBind
	}{
		{name: "loopback v4, open", cfg: ListenerConfig{Address: "127.0.0.1:8080"}},
		{name: "loopback other v4, open", cfg: ListenerConfig{Address: "127.0.0.9:8080"}},
		{name: "loopback v6, open", cfg: ListenerConfig{Address: "[::1]:8080"}},
		{name: "mapped loopback, open", cfg: ListenerConfig{Address: "[::ffff:127.0.0.1]:8080"}},
		{name: "all v4, open", cfg: ListenerConfig{Address: "0.0.0.0:8080"}, wantErr: "0.0.0.0:8080", public: true},
		{name: "all v6, open", cfg: ListenerConfig{Address: "[::]:8080"}, wantErr: "[::]:8080", public: true},
		{name: "empty host, open", cfg: ListenerConfig{Address: ":8080"}, public: true},
		{name: "hostname, open", cfg: ListenerConfig{Address: "gateway.internal:8080"}, public: true},
		{name: "localhost is a hostname", cfg: ListenerConfig{Address: "localhost:8080"}, public: true},
		{name: "private address, open", cfg: ListenerConfig{Address: "10.1.2.3:8080"}, public: true},
		{name: "zoned link-local, open", cfg: ListenerConfig{Address: "[fe80::1%eth0]:8080"}, public: true},
		{name: "all v4, allowlist", cfg: ListenerConfig{Address: "0.0.0.0:8080", AllowedSources: allow}},
		{name: "hostname, allowlist", cfg: ListenerConfig{Address: "gateway.internal:8080", AllowedSources: allow}},
		{name: "all v6, public acknowledged", cfg: ListenerConfig{Address: "[::]:8080", AllowPublicBind: true}},
		{name: "no port", cfg: ListenerConfig{Address: "127.0.0.1"}, wantErr: "address"},
		{name: "empty port", cfg: ListenerConfig{Address: "127.0.0.1:"}, wantErr: "missing port"},
		{name: "invalid prefix", cfg: ListenerConfig{Address: "127.0.0.1:1", AllowedSources: []netip.Prefix{{}}}, wantErr: "allowed_sources[0]"},
		{name: "invalid proxy prefix", cfg: ListenerConfig{Address: "127.0.0.1:1", TrustedProxies: []netip.Prefix{{}}}, wantErr: "trusted_proxies[0]"},
		{name: "proxy protocol without proxies", cfg: ListenerConfig{Address: "127.0.0.1:1", ProxyProtocol: true}, wantErr: "proxy_protocol"},
		{name: "proxy protocol", cfg: ListenerConfig{Address: "127.0.0.1:1", ProxyProtocol: true, TrustedProxies: allow}},
		{name: "tls without key", cfg: ListenerConfig{Address: "127.0.0.1:1", TLS: &TLSConfig{CertFile: "c"}}, wantErr: "key_file"},
		{name: "crl without ca", cfg: ListenerConfig{Address: "127.0.0.1:1", TLS: &TLSConfig{CertFile: "c", KeyFile: "k", CRLFiles: []string{"x"}}}, wantErr: "client_ca_file"},
		{name: "tls", cfg: ListenerConfig{Address: "127.0.0.1:1", TLS: &TLSConfig{CertFile: "c", KeyFile: "k", ClientCAFile: "ca", CRLFiles: []string{"x"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.cfg)
			wantErr := tt.wantErr != "" || tt.public
			if (err != nil) != wantErr {
				t.Fatalf("Validate() = %v, want error %v", err, wantErr)
			}
			if err == nil {
				return
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Validate() = %q, want it to mention %q", err, tt.wantErr)
			}
			if errors.Is(err, ErrPublicBind) != tt.public {
				t.Errorf("errors.Is(%v, ErrPublicBind) = %v, want %v", err, !tt.public, tt.public)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	err := Validate(ListenerConfig{Address: "0.0.0.0:1", ProxyProtocol: true, TLS: &TLSConfig{}})
	for _, want := range []string{"AllowPublicBind", "proxy_protocol", "key_file"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %q", err, want)
		}
	}
}

func TestPrefixSetUnmaps(t *testing.T) {
	set := newPrefixSet(prefixes("::ffff:127.0.0.0/120", "2001:db8::/32"))
	for _, tt := range []struct {
		addr string
		want bool
	}{
		{"127.0.0.2", true},
		{"::ffff:127.0.0.2", true}, // normalised below, as the listener does
		{"127.0.1.2", false},
		{"2001:db8::1", true},
		{"fe80::1%eth0", false},
	} {
		if got := set.contains(normalize(netip.MustParseAddr(tt.addr))); got != tt.want {
			t.Errorf("contains(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
	// A zoned address matches once its zone is dropped.
	if !newPrefixSet(prefixes("fe80::/10")).contains(normalize(netip.MustParseAddr("fe80::1%eth0"))) {
		t.Error("zoned link-local address not matched by fe80::/10")
	}
}
