package capacity

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/config"
)

var day = time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)

func at(h, m int) time.Time {
	return day.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute)
}

func entities(es ...Entity) func() []Entity { return func() []Entity { return es } }

func TestAccrueEachEndedHourOnce(t *testing.T) {
	st := newMemStore()
	pt := Entity{Endpoint: "chat", ServedEntity: "llama-pt", HourlyMicros: 12_500_000, TokensPerSecond: 2000, Since: at(10, 30)}
	a := &Accruer{Store: st, Entities: entities(pt)}
	ctx := context.Background()

	// The hour provisioning began in is charged; the hour still running
	// is not. Nothing used the capacity: the hours are owed anyway.
	n, err := a.AccrueOnce(ctx, at(13, 15))
	if err != nil || n != 3 {
		t.Fatalf("first accrual sent %d (%v), want hours 10, 11 and 12", n, err)
	}
	// Later in the same hour, nothing new.
	if n, err := a.AccrueOnce(ctx, at(13, 59)); err != nil || n != 0 {
		t.Fatalf("second accrual in the same hour sent %d (%v)", n, err)
	}
	// The next hour: only hour 13.
	if n, err := a.AccrueOnce(ctx, at(14, 0)); err != nil || n != 1 {
		t.Fatalf("accrual after hour 13 ended sent %d (%v)", n, err)
	}
	// A restart (or another replica) sends every hour again; the store
	// keeps each once.
	b := &Accruer{Store: st, Entities: entities(pt)}
	if n, err := b.AccrueOnce(ctx, at(14, 30)); err != nil || n != 4 {
		t.Fatalf("restarted accrual sent %d (%v), want 4", n, err)
	}
	if st.inserted != 4 || len(st.charges) != 4 {
		t.Fatalf("store holds %d charges (%d inserted), want 4", len(st.charges), st.inserted)
	}
	charges, _ := st.CapacityCharges(ctx, day, day.Add(24*time.Hour))
	for i, c := range charges {
		if !c.Hour.Equal(at(10+i, 0)) || c.CostMicros != 12_500_000 || c.TokensPerSecond != 2000 ||
			c.Endpoint != "chat" || c.ServedEntity != "llama-pt" {
			t.Fatalf("charge %d = %+v", i, c)
		}
	}
}

func TestAccrueLookbackAndFreeEntities(t *testing.T) {
	st := newMemStore()
	a := &Accruer{Store: st, Entities: entities(
		Entity{Endpoint: "e", ServedEntity: "old", HourlyMicros: 1}, // no Since: the lookback bounds it
		Entity{Endpoint: "e", ServedEntity: "free", Concurrency: 4}, // no price: nothing owed
	)}
	n, err := a.AccrueOnce(context.Background(), at(13, 15))
	if err != nil || n != 7*24 {
		t.Fatalf("sent %d (%v), want %d", n, err, 7*24)
	}
	charges, _ := st.CapacityCharges(context.Background(), time.Time{}, at(24, 0))
	if first, last := charges[0].Hour, charges[len(charges)-1].Hour; !first.Equal(at(13, 0).Add(-Lookback)) || !last.Equal(at(12, 0)) {
		t.Fatalf("charged %v to %v", first, last)
	}
}

func TestAccrueRetriesAfterStoreFailure(t *testing.T) {
	st := newMemStore()
	st.fail = errors.New("disk full")
	a := &Accruer{Store: st, Entities: entities(Entity{Endpoint: "e", ServedEntity: "s", HourlyMicros: 5, Since: at(9, 0)})}
	if _, err := a.AccrueOnce(context.Background(), at(11, 0)); err == nil {
		t.Fatal("store failure not reported")
	}
	st.fail = nil
	if n, err := a.AccrueOnce(context.Background(), at(11, 1)); err != nil || n != 2 || st.inserted != 2 {
		t.Fatalf("retry sent %d (%v), stored %d; want hours 9 and 10", n, err, st.inserted)
	}
}

func TestAccrueRunStops(t *testing.T) {
	st := newMemStore()
	accrued := make(chan struct{}, 1)
	clk := newClock(at(12, 0))
	a := &Accruer{Store: st, Now: clk.Now, Entities: func() []Entity {
		select {
		case accrued <- struct{}{}:
		default:
		}
		return []Entity{{Endpoint: "e", ServedEntity: "s", HourlyMicros: 5, Since: at(10, 0)}}
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		a.Run(ctx)
		close(done)
	}()
	<-accrued // Run accrues at once
	cancel()
	<-done
	if st.inserted != 2 {
		t.Fatalf("Run's first accrual stored %d charges, want 2", st.inserted)
	}
}

func TestEntityFor(t *testing.T) {
	e, ok, err := EntityFor("chat", "pt", &config.Capacity{TokensPerSecond: 100, HourlyPrice: "12.50"}, "", at(1, 0))
	if err != nil || !ok || e.HourlyMicros != 12_500_000 || e.TokensPerSecond != 100 || !e.Since.Equal(at(1, 0)) {
		t.Fatalf("EntityFor = %+v %v %v", e, ok, err)
	}
	e, ok, err = EntityFor("chat", "custom", &config.Capacity{HourlyPrice: "3"}, "Large", time.Time{})
	if err != nil || !ok || e.Concurrency != 64 {
		t.Fatalf("EntityFor with a workload size = %+v %v %v", e, ok, err)
	}
	if _, ok, _ := EntityFor("chat", "x", &config.Capacity{Concurrency: 2}, "", time.Time{}); ok {
		t.Fatal("an unpriced capacity is an entity")
	}
	if _, _, err := EntityFor("chat", "x", &config.Capacity{HourlyPrice: "-1"}, "", time.Time{}); err == nil {
		t.Fatal("a bad price was accepted")
	}
}
