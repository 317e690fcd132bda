// Package e2e holds Sluice's end-to-end tests: a real gateway (in process,
// or the built binary) on a loopback listener with a SQLite ledger, in front
// of a real OpenAI-compatible upstream (the simulator, or a handler that
// misbehaves on purpose), driven by the official OpenAI Go SDK and by raw
// HTTP clients. Every test checks what the client saw and what the ledger
// recorded.
//
//	go test -race ./e2e/            # everything
//	go test -race -short ./e2e/     # without the crash test (builds the binary)
package e2e
