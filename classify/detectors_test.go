package classify

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

func mustNew(t testing.TB, cfg Config) *Classifier {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// found renders findings as "detector:matched text" for comparisons.
func found(text string, fs []Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Detector+":"+text[f.Start:f.End])
	}
	return out
}

func TestDetectorsTruePositives(t *testing.T) {
	c := mustNew(t, Config{})
	tests := []struct {
		text string
		want string // detector:matched text
	}{
		// e-mail
		{"write to jane.doe@example.com today", "email:jane.doe@example.com"},
		{"cc a+b@sub.example.org.", "email:a+b@sub.example.org"},
		{"<x_y%z@ex-ample.io>", "email:x_y%z@ex-ample.io"},
		{"mailto:ops@example.net?subject=hi", "email:ops@example.net"},

		// phone
		{"call +1 415 555 0132 now", "phone:+1 415 555 0132"},
		{"sms +14155550132", "phone:+14155550132"},
		{"London +44 20 7946 0958", "phone:+44 20 7946 0958"},
		{"Berlin +49 (0)30 1234567", "phone:+49 (0)30 1234567"},
		{"office (415) 555-0132", "phone:(415) 555-0132"},
		{"office 415-555-0132.", "phone:415-555-0132"},
		{"office 415.555.0132", "phone:415.555.0132"},
		{"office 415 555 0132", "phone:415 555 0132"},
		{"toll free 1-800-555-0199", "phone:1-800-555-0199"},
		{"tel 020 7946 0958", "phone:020 7946 0958"},
		{"mobile 07700 900123", "phone:07700 900123"},
		{"Büro 030 12345678", "phone:030 12345678"},
		{"bureau 01 23 45 67 89", "phone:01 23 45 67 89"},
		{"bureau 01.23.45.67.89", "phone:01.23.45.67.89"},
		{"from abroad 0044 20 7946 0958", "phone:0044 20 7946 0958"},
		{"call 415-555-0132 2024", "phone:415-555-0132"},

		// payment cards (network test numbers)
		{"visa 4111 1111 1111 1111 exp", "card:4111 1111 1111 1111"},
		{"visa 4111-1111-1111-1111", "card:4111-1111-1111-1111"},
		{"visa 4111111111111111.", "card:4111111111111111"},
		{"mc 5555 5555 5555 4444", "card:5555 5555 5555 4444"},
		{"mc2 2223003122003222", "card:2223003122003222"},
		{"amex 3782 822463 10005", "card:3782 822463 10005"},
		{"discover 6011 1111 1111 1117", "card:6011 1111 1111 1117"},
		{"jcb 3530111333300000", "card:3530111333300000"},
		{"diners 30569309025904", "card:30569309025904"},
		{"unionpay 6200000000000005", "card:6200000000000005"},
		{"order 12 4111 1111 1111 1111", "card:4111 1111 1111 1111"},

		// IBAN
		{"pay DE89 3704 0044 0532 0130 00 please", "iban:DE89 3704 0044 0532 0130 00"},
		{"pay GB82WEST12345698765432", "iban:GB82WEST12345698765432"},
		{"pay FR1420041010050500013M02606", "iban:FR1420041010050500013M02606"},
		{"pay NL91ABNA0417164300.", "iban:NL91ABNA0417164300"},
		{"pay CH93 0076 2011 6238 5295 7", "iban:CH93 0076 2011 6238 5295 7"},

		// SSN
		{"ssn 219-45-6789", "ssn:219-45-6789"},
		{"ssn 536 22 1234", "ssn:536 22 1234"},

		// IP addresses
		{"host 192.168.1.10:8080", "ip:192.168.1.10"},
		{"dns 8.8.8.8.", "ip:8.8.8.8"},
		{"v6 2001:db8::1 ok", "ip:2001:db8::1"},
		{"loopback ::1", "ip:::1"},
		{"url http://[2001:db8::1]:443/", "ip:2001:db8::1"},
		{"full 2001:0db8:85a3:0000:0000:8a2e:0370:7334", "ip:2001:0db8:85a3:0000:0000:8a2e:0370:7334"},
		{"mapped ::ffff:192.0.2.1", "ip:::ffff:192.0.2.1"},
		{"link fe80::1:", "ip:fe80::1"},

		// secrets
		{"OPENAI_API_KEY=sk-proj-AbCdEf1234567890XyZabc123", "secret:sk-proj-AbCdEf1234567890XyZabc123"},
		{"key sk-ant-api03-Zx9_Yw8-Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0", "secret:sk-ant-api03-Zx9_Yw8-Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0"},
		{"aws AKIAIOSFODNN7EXAMPLE", "secret:AKIAIOSFODNN7EXAMPLE"},
		{"gh ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789", "secret:ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"},
		{"gh github_pat_11ABCDEFG0123456789_abcdefghijKLMNOP", "secret:github_pat_11ABCDEFG0123456789_abcdefghijKLMNOP"},
		{"slack xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "secret:xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"},
		{"google AIzaSyA-1234567890abcdefghijklmnopqrstu", "secret:AIzaSyA-1234567890abcdefghijklmnopqrstu"},
		{"stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc", "secret:sk_live_4eC39HqLyjWDarjtT1zdp7dc"},
		{"gitlab glpat-Ab1Cd2Ef3Gh4Ij5Kl6Mn", "secret:glpat-Ab1Cd2Ef3Gh4Ij5Kl6Mn"},
		{"hf hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789", "secret:hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"},
		{"jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U end",
			"secret:eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"},
		{"key:\n-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n-----END RSA PRIVATE KEY-----\nthanks",
			"secret:-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n-----END RSA PRIVATE KEY-----"},
		{"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\nAAAAAAABAAAAMwAAAAtzc2gtZWQyNTUxOQ\n\nwhat is this?",
			"secret:-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\nAAAAAAABAAAAMwAAAAtzc2gtZWQyNTUxOQ"},

		// high-entropy tokens
		{"secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY end", "entropy:wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"},
		{"token=q8ZrT2xV9bN4mK7pL1sW6dF3gH5jY0cA", "entropy:q8ZrT2xV9bN4mK7pL1sW6dF3gH5jY0cA"},
		{"padded c2VjcmV0LXRva2VuLTEyMzQ1Njc4OTA= end", "entropy:c2VjcmV0LXRva2VuLTEyMzQ1Njc4OTA="},
	}
	for _, tt := range tests {
		r := c.Classify([]byte(tt.text))
		got := found(tt.text, r.Findings)
		if !slices.Equal(got, []string{tt.want}) {
			t.Errorf("Classify(%q) = %q, want [%q]", tt.text, got, tt.want)
		}
	}
}

// TestDetectorsNearMisses lists text that looks like a detector's target
// but is not; none of it may produce a finding.
func TestDetectorsNearMisses(t *testing.T) {
	c := mustNew(t, Config{})
	misses := []string{
		// e-mail
		"user@localhost", "follow @handle", "a@b", "name@domain.c", "pkg@1.2.3", "@Override",
		"user@-example.com", "x@example.com1",
		// phone
		"555-1234", "(415) 155-0132", "415-055-0132", "12345", "2024 2025", "2023-01-15",
		"15.01.2024", "01.02.2024 10:30", "0 800 12", "call 1234567890", "the 2020-2024 period",
		"score 3-1", "1 234 567", "+123", "00000 000000", "415-555-0132-99",
		// cards
		"4111111111111112", "4111 1111 1111 111", "1234 5678 9012 3456", "4111 11111111 1111",
		"4111 1111-1111 1111", "41111111111111111111", "4111111111111111abc", "9111111111111111",
		// IBAN
		"DE89 3704 0044 0532 0130 01", "GB82WEST1234569876543", "XX82WEST12345698765432",
		"DE89370400440532013000X", "DE8 93704",
		// SSN
		"000-12-3456", "666-12-3456", "900-12-3456", "123-00-4567", "123-45-0000",
		"078-05-1120", "123-45-6789", "123-45 6789", "1234-56-789",
		// IP
		"version 1.2.3", "v1.2.3.4", "1.2.3.4.5", "256.1.1.1", "01.02.03.04", "std::vector",
		"12:30:45", "00:1a:2b:3c:4d:5e", "a::b::c", "Foo::Bar", "10.0.0", ":::", "::",
		// secrets
		"sk-learn", "sk-abcdefghijklmnopqrstuvwxyz", "task-force", "AKIA1234", "AKIAIOSFODNN7EXAMPLEX",
		"ghp_short", "eyJhbGciOiJ9", "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----",
		"-----BEGIN CERTIFICATE-----",
		// entropy
		"TestHTTP2ServerConnectionReuseAfterGoAway", "MAX_CONCURRENT_STREAMS_PER_CONNECTION_V2",
		"123e4567-e89b-12d3-a456-426614174000", "9fceb02d0ae598e95dc970b74767f19372d61af8",
		"internationalization", "getElementByIdAndName", "GODEBUG=http2client=0",
		strings.Repeat("Ab1", 100), // longer than any credential
	}
	for _, m := range misses {
		if r := c.Classify([]byte(m)); len(r.Findings) > 0 {
			t.Errorf("Classify(%q) = %q, want nothing", m, found(m, r.Findings))
		}
	}
}

func TestLuhnAndIIN(t *testing.T) {
	for _, n := range []string{"4111111111111111", "5555555555554444", "378282246310005", "6011111111111117"} {
		if !luhn([]byte(n)) || !cardIIN([]byte(n)) {
			t.Errorf("%s: luhn=%v iin=%v", n, luhn([]byte(n)), cardIIN([]byte(n)))
		}
	}
	if luhn([]byte("4111111111111112")) {
		t.Error("luhn accepted a bad check digit")
	}
}

func TestIBANTable(t *testing.T) {
	// Every length in the table is one an IBAN can have.
	for cc, n := range ibanLengths {
		if n < 15 || n > 34 {
			t.Errorf("%s: length %d", cc[:], n)
		}
	}
	// Valid examples for a sample of countries, with their checksums.
	for _, s := range []string{
		"AT611904300234573201", "BE68539007547034", "ES9121000418450200051332",
		"IT60X0542811101000000123456", "NO9386011117947", "PL61109010140000071219812874",
		"SE4550000000058398257466", "MT84MALT011000012345MTLCAST001S",
	} {
		c := mustNew(t, Config{Rules: []Rule{{DetectorIBAN, "restricted"}}})
		if r := c.Classify([]byte(s)); len(r.Findings) != 1 {
			t.Errorf("IBAN %s not found", s)
		}
	}
}

func TestRulesChooseDetectors(t *testing.T) {
	c := mustNew(t, Config{Rules: []Rule{{DetectorEmail, "internal"}}})
	text := "jane@example.com 4111 1111 1111 1111 sk-proj-AbCdEf1234567890XyZabc123"
	r := c.Classify([]byte(text))
	if got := found(text, r.Findings); !slices.Equal(got, []string{"email:jane@example.com"}) {
		t.Fatalf("findings = %q, want only the e-mail", got)
	}
	if r.Class != "internal" {
		t.Fatalf("class = %s, want internal", r.Class)
	}
	// With no rules at all nothing runs.
	c = mustNew(t, Config{Rules: []Rule{}})
	if r := c.Classify([]byte(text)); len(r.Findings) != 0 || r.Class != "public" {
		t.Fatalf("no rules: %+v", r)
	}
}

func TestEntropySettings(t *testing.T) {
	tok := "q8ZrT2xV9bN4mK7pL1sW6dF3gH5jY0cA" // 32 bytes, entropy ≈ 5
	strict := mustNew(t, Config{EntropyThreshold: 5.5})
	if r := strict.Classify([]byte(tok)); len(r.Findings) != 0 {
		t.Errorf("threshold 5.5 flagged %q", tok)
	}
	long := mustNew(t, Config{EntropyMinLen: 40})
	if r := long.Classify([]byte(tok)); len(r.Findings) != 0 {
		t.Errorf("minimum length 40 flagged a 32-byte token")
	}
}

func ExampleClassifier_Classify() {
	c, _ := New(Config{})
	text := []byte("Refund card 4111 1111 1111 1111 for jane@example.com")
	r := c.Classify(text)
	fmt.Println(r.Class, r.Reasons)
	for _, f := range r.Findings {
		fmt.Println(f.Detector, f.Start, f.End)
	}
	fmt.Println(string(Mask(text, r.Findings)))
	// Output:
	// restricted [detector:card]
	// card 12 31
	// email 36 52
	// Refund card [CARD_1] for [EMAIL_1]
}
