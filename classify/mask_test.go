package classify

import "testing"

func TestMask(t *testing.T) {
	text := "a@x.com, b@y.com; again a@x.com. EMP-123456"
	fs := []Finding{
		{"employee-id", 33, 43},
		{DetectorEmail, 0, 7},
		{DetectorEmail, 9, 16},
		{DetectorEmail, 24, 31},
		{DetectorEmail, 3, 5},    // inside the first: merged away
		{DetectorEmail, -1, 3},   // out of range: ignored
		{DetectorEmail, 40, 100}, // out of range: ignored
		{DetectorEmail, 8, 8},    // empty: ignored
	}
	orig := text
	got := string(Mask([]byte(text), fs))
	want := "[EMAIL_1], [EMAIL_2]; again [EMAIL_1]. [EMPLOYEE_ID_1]"
	if got != want {
		t.Fatalf("Mask = %q, want %q", got, want)
	}
	if text != orig {
		t.Fatal("Mask modified its input")
	}
	if got := string(Mask([]byte("plain"), nil)); got != "plain" {
		t.Fatalf("Mask without findings = %q", got)
	}
}

func TestMaskClassifierOutput(t *testing.T) {
	c := mustNew(t, Config{})
	text := []byte("Call +44 20 7946 0958 or +44 20 7946 0958, key AKIAIOSFODNN7EXAMPLE, IBAN GB82WEST12345698765432")
	got := string(Mask(text, c.Classify(text).Findings))
	want := "Call [PHONE_1] or [PHONE_1], key [SECRET_1], IBAN [IBAN_1]"
	if got != want {
		t.Fatalf("Mask = %q, want %q", got, want)
	}
}
