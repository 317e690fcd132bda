// Package auth issues and checks Sluice API keys.
//
// A key reads sk-sluice-<id>_<secret><check>: the id (12 base32 characters)
// finds the stored key without a scan, the secret (32 base32 characters,
// 160 random bits) is what the stored SHA-256 digest proves, and the check
// (6 base32 characters of a CRC-32 over everything before it) rejects typos
// and random strings before any lookup or hash. Only the digest is stored.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"hash/crc32"
	"strings"
	"time"

	"github.com/sluice-gateway/sluice"
)

// Prefix starts every Sluice key; OpenAI-style tools expect "sk-".
const Prefix = "sk-sluice-"

const (
	idLen     = 12
	secretLen = 32
	checkLen  = 6
	// KeyLen is the length of a whole key.
	KeyLen = len(Prefix) + idLen + 1 + secretLen + checkLen
)

var enc = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// ErrMalformed means a string is not a well-formed Sluice key.
var ErrMalformed = errors.New("malformed key")

// Generate returns a new key and its id.
func Generate() (secret, id string, err error) {
	var b [27]byte // 7.5 bytes of id, 20 of secret: draw whole bytes, trim
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", err
	}
	s := enc.EncodeToString(b[:])
	id = s[:idLen]
	body := Prefix + id + "_" + s[idLen:idLen+secretLen]
	return body + checksum(body), id, nil
}

func checksum(body string) string {
	c := crc32.ChecksumIEEE([]byte(body))
	var b [4]byte
	b[0], b[1], b[2], b[3] = byte(c>>24), byte(c>>16), byte(c>>8), byte(c)
	return enc.EncodeToString(b[:])[:checkLen]
}

// Parse checks a key's shape and checksum and returns its id.
func Parse(key string) (id string, err error) {
	if len(key) != KeyLen || !strings.HasPrefix(key, Prefix) {
		return "", ErrMalformed
	}
	rest := key[len(Prefix):]
	if rest[idLen] != '_' {
		return "", ErrMalformed
	}
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		if i == idLen {
			continue
		}
		if (c < 'a' || c > 'z') && (c < '2' || c > '7') {
			return "", ErrMalformed
		}
	}
	n := len(key) - checkLen
	if checksum(key[:n]) != key[n:] {
		return "", ErrMalformed
	}
	return rest[:idLen], nil
}

// Digest is what the store keeps of a key.
func Digest(key string) [32]byte { return sha256.Sum256([]byte(key)) }

// NewKey generates a key for team and returns the secret (shown once) and
// the record to store, which holds only the digest.
func NewKey(team, name string, admin bool, endpoints []string, expires, now time.Time) (secret string, k sluice.Key, err error) {
	if team == "" {
		return "", k, errors.New("a key needs a team")
	}
	secret, id, err := Generate()
	if err != nil {
		return "", k, err
	}
	k = sluice.Key{ID: id, Hash: Digest(secret), Name: name, Team: team, Admin: admin,
		Endpoints: endpoints, ExpiresAt: expires.UTC(), CreatedAt: now.UTC()}
	if expires.IsZero() {
		k.ExpiresAt = time.Time{}
	}
	return secret, k, nil
}
