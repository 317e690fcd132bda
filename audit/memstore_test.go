package audit_test

import (
	"testing"

	"github.com/sluice-gateway/sluice/audit"
	"github.com/sluice-gateway/sluice/audit/audittest"
)

func TestMemoryStore(t *testing.T) {
	audittest.Run(t, func(*testing.T) audit.Store { return &audit.MemoryStore{} })
}
