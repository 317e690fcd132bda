package ingress

import (
	"crypto/tls"
	"errors"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// handshake is one VerifyConnection call seen by the test.
type handshake struct {
	resumed bool
	err     error
}

// mtlsEnv is a listener with mutual TLS on 127.0.0.1 and the PKI behind it.
type mtlsEnv struct {
	t        *testing.T
	dir      string
	clock    *testClock
	serverCA *testCA
	clientCA *testCA
	files    TLSConfig
	url      string
	logs     lines

	mu         sync.Mutex
	handshakes []handshake
}

// newMTLSEnv starts a server whose clients need certificates from a client
// CA, with a CRL (revoking serial 13) re-checked at most every minute of the
// injected clock. tweak may change the TLS files before the start.
func newMTLSEnv(t *testing.T, tweak func(*mtlsEnv)) *mtlsEnv {
	t.Helper()
	e := &mtlsEnv{t: t, dir: t.TempDir(), clock: newClock(time.Now()), serverCA: newCA(t, "server ca"), clientCA: newCA(t, "client ca")}
	e.files = serverFiles(t, e.dir, e.serverCA)
	e.files.ClientCAFile = writeFile(t, e.dir, "client-ca.pem", e.clientCA.pem())
	e.files.CRLFiles = []string{writeFile(t, e.dir, "client.crl", e.clientCA.crl(t, 1, time.Now().Add(24*time.Hour), 13))}
	e.files.CRLCheckInterval = time.Minute
	if tweak != nil {
		tweak(e)
	}
	conf, err := ServerTLSConfig(e.files, e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	verify := conf.VerifyConnection
	conf.VerifyConnection = func(cs tls.ConnectionState) error {
		err := verify(cs)
		e.mu.Lock()
		e.handshakes = append(e.handshakes, handshake{resumed: cs.DidResume, err: err})
		e.mu.Unlock()
		return err
	}
	ln := newListener(loopbackListener(t), ListenerConfig{AllowedSources: prefixes("127.0.0.1/32")}, Options{Now: e.clock.Now}, conf)
	e.logs = serve(t, ln, echoClient)
	e.url = "https://" + ln.Addr().String() + "/"
	return e
}

// client returns an HTTPS client presenting certs, with a session cache so
// that its second connection resumes the first one's session.
func (e *mtlsEnv) client(certs ...tls.Certificate) *http.Client {
	return httpClient("127.0.0.1", &tls.Config{
		RootCAs:            e.serverCA.pool(),
		ClientSessionCache: tls.NewLRUClientSessionCache(4),
		// Send the certificate even when its CA is not one the server
		// asks for, which the Certificates field would not.
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if len(certs) == 0 {
				return &tls.Certificate{}, nil
			}
			return &certs[0], nil
		},
	})
}

// lastHandshake returns the most recent VerifyConnection call.
func (e *mtlsEnv) lastHandshake() handshake {
	e.t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.handshakes) == 0 {
		e.t.Fatal("VerifyConnection was never called")
	}
	return e.handshakes[len(e.handshakes)-1]
}

func (e *mtlsEnv) handshakeCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.handshakes)
}

// leaf issues a client certificate from the client CA.
func (e *mtlsEnv) leaf(serial int64, notBefore, notAfter time.Time) tls.Certificate {
	return e.clientCA.issue(e.t, serial, notBefore, notAfter, false)
}

func TestMutualTLS(t *testing.T) {
	e := newMTLSEnv(t, nil)
	now := time.Now()
	valid := func(serial int64) tls.Certificate { return e.leaf(serial, now.Add(-time.Hour), now.Add(time.Hour)) }
	stranger := newCA(t, "other ca").issue(t, 20, now.Add(-time.Hour), now.Add(time.Hour), false)

	tests := []struct {
		name    string
		certs   []tls.Certificate
		log     string // expected in the server's handshake error; "" means success
		checked error  // error VerifyConnection must return, when it is reached
	}{
		{name: "valid", certs: []tls.Certificate{valid(11)}},
		{name: "no certificate", log: "client didn't provide a certificate"},
		{name: "expired", certs: []tls.Certificate{e.leaf(12, now.Add(-2*time.Hour), now.Add(-time.Hour))}, log: "expired"},
		{name: "wrong ca", certs: []tls.Certificate{stranger}, log: "unknown authority"},
		{name: "revoked", certs: []tls.Certificate{valid(13)}, log: "revoked", checked: ErrCertRevoked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.handshakeCount()
			body, err := get(e.client(tt.certs...), e.url, nil)
			if tt.log == "" {
				if err != nil || body != "127.0.0.1" {
					t.Fatalf("got %q, %v; want success", body, err)
				}
				if h := e.lastHandshake(); h.err != nil {
					t.Errorf("VerifyConnection = %v", h.err)
				}
				return
			}
			if err == nil {
				t.Fatalf("request succeeded: %q", body)
			}
			e.logs.waitFor(t, tt.log)
			if tt.checked != nil {
				if h := e.lastHandshake(); !errors.Is(h.err, tt.checked) {
					t.Errorf("VerifyConnection = %v, want %v", h.err, tt.checked)
				}
			} else if n := e.handshakeCount(); n != before {
				t.Errorf("VerifyConnection ran for a chain crypto/tls refused")
			}
		})
	}
}

// TestResumedSessionExpired: a session established while the certificate
// was valid must not be resumed after it expired. crypto/tls checks expiry
// on resumption against its own clock (the wall clock here, under which the
// certificate is still valid), so only VerifyConnection can catch this.
func TestResumedSessionExpired(t *testing.T) {
	e := newMTLSEnv(t, nil)
	now := time.Now()
	c := e.client(e.leaf(30, now.Add(-time.Hour), now.Add(time.Hour)))

	if _, err := get(c, e.url, nil); err != nil {
		t.Fatalf("first request: %v", err)
	}
	if _, err := get(c, e.url, nil); err != nil {
		t.Fatalf("second request: %v", err)
	}
	if h := e.lastHandshake(); !h.resumed || h.err != nil {
		t.Fatalf("second handshake = %+v, want a resumed session, accepted", h)
	}

	e.clock.Advance(2 * time.Hour)
	if _, err := get(c, e.url, nil); err == nil {
		t.Fatal("request on a resumed session with an expired certificate succeeded")
	}
	if h := e.lastHandshake(); !h.resumed || !errors.Is(h.err, ErrCertExpired) {
		t.Fatalf("third handshake = %+v, want a resumed session refused with ErrCertExpired", h)
	}
}

// TestCRLReloadAppliesToResumedSessions: a certificate revoked after its
// session began is refused on resumption once the new CRL is picked up.
func TestCRLReloadAppliesToResumedSessions(t *testing.T) {
	e := newMTLSEnv(t, nil)
	now := time.Now()
	c := e.client(e.leaf(40, now.Add(-time.Hour), now.Add(10*time.Hour)))
	if _, err := get(c, e.url, nil); err != nil {
		t.Fatalf("first request: %v", err)
	}

	writeFile(t, e.dir, "client.crl", e.clientCA.crl(t, 2, now.Add(24*time.Hour), 13, 40))
	// Within the check interval the old list still applies.
	if _, err := get(c, e.url, nil); err != nil {
		t.Fatalf("request before the CRL check interval passed: %v", err)
	}
	e.clock.Advance(time.Minute)
	if _, err := get(c, e.url, nil); err == nil {
		t.Fatal("request with a revoked certificate succeeded")
	}
	if h := e.lastHandshake(); !h.resumed || !errors.Is(h.err, ErrCertRevoked) {
		t.Fatalf("handshake = %+v, want a resumed session refused with ErrCertRevoked", h)
	}
}

func TestCRLBrokenReloadKeepsOldList(t *testing.T) {
	e := newMTLSEnv(t, nil)
	now := time.Now()
	if err := os.WriteFile(e.files.CRLFiles[0], []byte("half a CRL"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute)
	if _, err := get(e.client(e.leaf(13, now.Add(-time.Hour), now.Add(time.Hour))), e.url, nil); err == nil {
		t.Fatal("revoked certificate admitted after a failed CRL reload")
	}
	if _, err := get(e.client(e.leaf(50, now.Add(-time.Hour), now.Add(time.Hour))), e.url, nil); err != nil {
		t.Fatalf("valid certificate refused after a failed CRL reload: %v", err)
	}
	// Once the old list goes stale the reload error is reported.
	e.clock.Advance(25 * time.Hour)
	if _, err := get(e.client(e.leaf(51, now.Add(-time.Hour), now.Add(48*time.Hour))), e.url, nil); err == nil {
		t.Fatal("client admitted on a stale CRL")
	}
	if h := e.lastHandshake(); !errors.Is(h.err, ErrCRLStale) || !strings.Contains(h.err.Error(), "reloading it failed") {
		t.Errorf("VerifyConnection = %v, want ErrCRLStale mentioning the failed reload", h.err)
	}
}

func TestStaleCRL(t *testing.T) {
	for _, allow := range []bool{false, true} {
		e := newMTLSEnv(t, func(e *mtlsEnv) { e.files.AllowStaleCRL = allow })
		now := time.Now()
		e.clock.Advance(25 * time.Hour)
		_, err := get(e.client(e.leaf(60, now.Add(-time.Hour), now.Add(48*time.Hour))), e.url, nil)
		if allow && err != nil {
			t.Errorf("AllowStaleCRL: request refused: %v", err)
		}
		if !allow && !errors.Is(e.lastHandshake().err, ErrCRLStale) {
			t.Errorf("stale CRL: VerifyConnection = %v, want ErrCRLStale", e.lastHandshake().err)
		}
	}
}

func TestServerTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	ca, other := newCA(t, "client ca"), newCA(t, "other ca")
	base := serverFiles(t, dir, newCA(t, "server ca"))
	base.ClientCAFile = writeFile(t, dir, "ca.pem", ca.pem())
	tests := []struct {
		name string
		edit func(*TLSConfig)
		want string
	}{
		{"missing key", func(c *TLSConfig) { c.KeyFile = dir + "/none" }, "server certificate"},
		{"missing ca", func(c *TLSConfig) { c.ClientCAFile = dir + "/none" }, "client cas"},
		{"ca file without certificates", func(c *TLSConfig) { c.ClientCAFile = writeFile(t, dir, "empty.pem", []byte("nothing")) }, "no PEM certificates"},
		{"crl from another ca", func(c *TLSConfig) {
			c.CRLFiles = []string{writeFile(t, dir, "other.crl", other.crl(t, 1, time.Now().Add(time.Hour)))}
		}, "not a client ca"},
		{"crl garbage", func(c *TLSConfig) { c.CRLFiles = []string{writeFile(t, dir, "bad.crl", []byte("garbage"))} }, "crl"},
		{"crl missing", func(c *TLSConfig) { c.CRLFiles = []string{dir + "/none.crl"} }, "crl"},
		{"crl without ca", func(c *TLSConfig) { c.ClientCAFile = ""; c.CRLFiles = []string{"x"} }, "client ca"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base
			tt.edit(&c)
			_, err := ServerTLSConfig(c, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ServerTLSConfig() = %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
	conf, err := ServerTLSConfig(base, nil)
	if err != nil {
		t.Fatal(err)
	}
	if conf.MinVersion != tls.VersionTLS12 || conf.ClientAuth != tls.RequireAndVerifyClientCert || conf.VerifyConnection == nil {
		t.Errorf("config: min %x, client auth %v, VerifyConnection set %v", conf.MinVersion, conf.ClientAuth, conf.VerifyConnection != nil)
	}
}
