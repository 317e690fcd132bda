package ingress

import (
	"bufio"
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
)

func BenchmarkParseProxyV2(b *testing.B) {
	h := withTLVs(AppendProxyV2Header(nil, src6, dst6), tlv(0x01, "h2"), tlv(0xEA, "vpce-0123456789abcdef"))
	r := bytes.NewReader(h)
	br := bufio.NewReaderSize(r, 512)
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(h)
		br.Reset(r)
		if _, _, err := ParseProxyV2(br); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkClientIP(b *testing.B) {
	trusted := prefixes("10.0.0.0/8", "192.168.0.0/16")
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("X-Forwarded-For", "203.0.113.9, 198.51.100.1, 10.0.0.7, 10.0.0.8")
	peer := netip.MustParseAddrPort("10.0.0.1:5000")
	b.ReportAllocs()
	for b.Loop() {
		if ClientIP(r, peer, trusted) != netip.MustParseAddr("198.51.100.1") {
			b.Fatal("wrong address")
		}
	}
}
