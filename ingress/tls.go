package ingress

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultCRLCheckInterval is how often CRL files are checked for changes
// when TLSConfig.CRLCheckInterval is zero.
const DefaultCRLCheckInterval = 30 * time.Second

// Errors from client certificate checks, wrapped in the handshake error.
var (
	ErrCertExpired  = errors.New("client certificate expired or not yet valid")
	ErrCertRevoked  = errors.New("client certificate revoked")
	ErrCRLStale     = errors.New("certificate revocation list is past its next update")
	ErrNoClientCert = errors.New("no client certificate")
)

// ServerTLSConfig builds a server TLS configuration from c: TLS 1.2 or
// newer, HTTP/2 and HTTP/1.1 offered by ALPN. now is the clock (nil means
// time.Now).
//
// With c.ClientCAFile, every client must present a certificate that chains
// to one of those CAs, and a VerifyConnection callback then checks the leaf
// against now() and against c.CRLFiles. VerifyConnection, unlike
// VerifyPeerCertificate, runs on resumed sessions too, so a certificate that
// expires or is revoked after a session was established cannot ride a
// session ticket past the check. (crypto/tls's own chain verification uses
// the wall clock; the expiry and CRL checks here use now.)
//
// Each CRL's signature is checked against the client CA that issued it. The
// files are re-read when their size or modification time changes, checked
// at most every c.CRLCheckInterval; if a changed file fails to load, the
// previous lists stay in force and the error is reported once they go stale.
// Only the leaf certificate is checked for revocation.
func ServerTLSConfig(c TLSConfig, now func() time.Time) (*tls.Config, error) {
	if now == nil {
		now = time.Now
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("ingress: loading server certificate: %w", err)
	}
	conf := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"h2", "http/1.1"},
	}
	if c.ClientCAFile == "" {
		if len(c.CRLFiles) > 0 {
			return nil, errors.New("ingress: crl files need a client ca file")
		}
		return conf, nil
	}
	cas, err := loadCerts(c.ClientCAFile)
	if err != nil {
		return nil, fmt.Errorf("ingress: loading client cas: %w", err)
	}
	pool := x509.NewCertPool()
	for _, ca := range cas {
		pool.AddCert(ca)
	}
	v := &clientVerifier{
		now:        now,
		cas:        cas,
		files:      c.CRLFiles,
		interval:   c.CRLCheckInterval,
		allowStale: c.AllowStaleCRL,
	}
	if v.interval <= 0 {
		v.interval = DefaultCRLCheckInterval
	}
	if err := v.load(); err != nil {
		return nil, fmt.Errorf("ingress: %w", err)
	}
	conf.ClientAuth = tls.RequireAndVerifyClientCert
	conf.ClientCAs = pool
	conf.VerifyConnection = v.verify
	return conf, nil
}

func loadCerts(file string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s: no PEM certificates", file)
	}
	return certs, nil
}

// clientVerifier checks client leaves for expiry and revocation.
type clientVerifier struct {
	now        func() time.Time
	cas        []*x509.Certificate
	files      []string
	interval   time.Duration
	allowStale bool

	crls      atomic.Pointer[crlSet]
	reloading sync.Mutex // held while checking files; handshakes never wait on it
}

// crlSet is one loaded generation of the CRL files.
type crlSet struct {
	lists     []*crl
	stamps    []fileStamp
	checked   time.Time // when the files were last compared with stamps
	reloadErr error     // the last failed reload since lists were loaded
}

type crl struct {
	file       string
	issuer     *x509.Certificate
	nextUpdate time.Time
	revoked    map[string]struct{} // serial numbers, as big.Int.String
}

type fileStamp struct {
	size int64
	mod  time.Time
}

func (v *clientVerifier) verify(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return ErrNoClientCert
	}
	leaf := cs.PeerCertificates[0]
	now := v.now()
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return fmt.Errorf("%w: valid %s to %s, now %s", ErrCertExpired,
			leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	set := v.current(now)
	for _, l := range set.lists {
		if !issuedBy(leaf, l.issuer) {
			continue
		}
		if !l.nextUpdate.IsZero() && now.After(l.nextUpdate) && !v.allowStale {
			if set.reloadErr != nil {
				return fmt.Errorf("%w: %s (reloading it failed: %v)", ErrCRLStale, l.file, set.reloadErr)
			}
			return fmt.Errorf("%w: %s", ErrCRLStale, l.file)
		}
		if _, ok := l.revoked[serialKey(leaf.SerialNumber)]; ok {
			return fmt.Errorf("%w: serial %s", ErrCertRevoked, leaf.SerialNumber)
		}
	}
	return nil
}

// issuedBy reports whether ca is leaf's issuer by name and, when both carry
// one, by key identifier (CAs that share a name across a key rollover).
func issuedBy(leaf, ca *x509.Certificate) bool {
	if !bytes.Equal(leaf.RawIssuer, ca.RawSubject) {
		return false
	}
	if len(leaf.AuthorityKeyId) > 0 && len(ca.SubjectKeyId) > 0 {
		return bytes.Equal(leaf.AuthorityKeyId, ca.SubjectKeyId)
	}
	return true
}

// current returns the CRLs in force, first re-reading the files if they
// changed and the check interval has passed. A handshake that finds another
// one checking uses the lists it has.
func (v *clientVerifier) current(now time.Time) *crlSet {
	set := v.crls.Load()
	if len(v.files) == 0 || now.Sub(set.checked) < v.interval || !v.reloading.TryLock() {
		return set
	}
	defer v.reloading.Unlock()
	set = v.crls.Load()
	stamps, err := statFiles(v.files)
	if err == nil && equalStamps(stamps, set.stamps) {
		next := *set
		next.checked = now
		v.crls.Store(&next)
		return &next
	}
	if err == nil {
		var fresh *crlSet
		if fresh, err = v.read(stamps); err == nil {
			fresh.checked = now
			v.crls.Store(fresh)
			return fresh
		}
	}
	next := *set
	next.checked = now
	next.reloadErr = err
	v.crls.Store(&next)
	return &next
}

// load reads the CRL files for the first time; any failure is fatal.
func (v *clientVerifier) load() error {
	stamps, err := statFiles(v.files)
	if err != nil {
		return err
	}
	set, err := v.read(stamps)
	if err != nil {
		return err
	}
	set.checked = v.now()
	v.crls.Store(set)
	return nil
}

func (v *clientVerifier) read(stamps []fileStamp) (*crlSet, error) {
	set := &crlSet{stamps: stamps}
	for _, f := range v.files {
		l, err := v.readCRL(f)
		if err != nil {
			return nil, err
		}
		set.lists = append(set.lists, l)
	}
	return set, nil
}

func (v *clientVerifier) readCRL(file string) (*crl, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading crl: %w", err)
	}
	if b, _ := pem.Decode(data); b != nil {
		if b.Type != "X509 CRL" {
			return nil, fmt.Errorf("crl %s: PEM block %q, want \"X509 CRL\"", file, b.Type)
		}
		data = b.Bytes
	}
	rl, err := x509.ParseRevocationList(data)
	if err != nil {
		return nil, fmt.Errorf("crl %s: %w", file, err)
	}
	var issuer *x509.Certificate
	var sigErr error
	for _, ca := range v.cas {
		if !bytes.Equal(rl.RawIssuer, ca.RawSubject) {
			continue
		}
		if sigErr = rl.CheckSignatureFrom(ca); sigErr == nil {
			issuer = ca
			break
		}
	}
	if issuer == nil {
		if sigErr != nil {
			return nil, fmt.Errorf("crl %s: signature: %w", file, sigErr)
		}
		return nil, fmt.Errorf("crl %s: issuer is not a client ca", file)
	}
	l := &crl{file: file, issuer: issuer, nextUpdate: rl.NextUpdate, revoked: make(map[string]struct{}, len(rl.RevokedCertificateEntries))}
	for _, e := range rl.RevokedCertificateEntries {
		l.revoked[serialKey(e.SerialNumber)] = struct{}{}
	}
	return l, nil
}

func serialKey(n *big.Int) string { return n.String() }

func statFiles(files []string) ([]fileStamp, error) {
	stamps := make([]fileStamp, len(files))
	for i, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			return nil, fmt.Errorf("crl: %w", err)
		}
		stamps[i] = fileStamp{size: fi.Size(), mod: fi.ModTime()}
	}
	return stamps, nil
}

func equalStamps(a, b []fileStamp) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].size != b[i].size || !a[i].mod.Equal(b[i].mod) {
			return false
		}
	}
	return true
}
